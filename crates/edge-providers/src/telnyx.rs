//! Telnyx API v2 client: `available_phone_numbers` (search), `number_orders` (purchase),
//! `phone_numbers` (lookup + release). Bearer API key.

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::http::{self, Response};
use crate::validate::{
    bounded_text, is_e164, nanp_area_code, nanp_friendly_name, validate_e164, validate_query, wanted,
};
use crate::{
    AvailableNumber, BoxFuture, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery,
    SecretString, MAX_SEARCH_LIMIT,
};

pub const TELNYX_DEFAULT_BASE_URL: &str = "https://api.telnyx.com";

/// Longest Telnyx resource id accepted into a URL path.
const MAX_ID_LEN: usize = 64;
/// How long a purchase follows an asynchronous number order before giving up as pending.
/// The API runs purchases in their own task, so this outlives the client's wait and the
/// number is registered when the order succeeds.
const ORDER_FOLLOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// First pause between order status polls (doubles up to 2 s).
const ORDER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Operator configuration for a Telnyx account.
#[derive(Debug, Clone, Deserialize)]
pub struct TelnyxConfig {
    pub api_key: SecretString,
    /// SIP connection purchased numbers are attached to, if any.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// Defaults to [`TELNYX_DEFAULT_BASE_URL`]; tests point it at a local server.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Telnyx-backed [`NumberProvider`]. `Debug` never shows the API key.
#[derive(Debug, Clone)]
pub struct TelnyxProvider {
    api_key: SecretString,
    connection_id: Option<String>,
    base_url: Url,
    client: reqwest::Client,
}

impl TelnyxProvider {
    pub fn new(config: TelnyxConfig) -> Result<Self, ProviderError> {
        let key = config.api_key.expose();
        // The key goes into a header: reject what a header cannot carry.
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ProviderError::invalid("api_key", "must be non-empty printable ASCII"));
        }
        if let Some(id) = &config.connection_id {
            if !is_id(id) {
                return Err(ProviderError::invalid(
                    "connection_id",
                    "must be 1-64 letters, digits or dashes",
                ));
            }
        }
        let base = config.base_url.as_deref().unwrap_or(TELNYX_DEFAULT_BASE_URL);
        Ok(Self {
            base_url: http::parse_base_url("base_url", base)?,
            api_key: config.api_key,
            connection_id: config.connection_id,
            client: http::client()?,
        })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut all = vec!["v2"];
        all.extend_from_slice(segments);
        http::endpoint(&self.base_url, &all)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(self.api_key.expose())
    }

    async fn search_impl(&self, q: &SearchQuery) -> Result<Vec<AvailableNumber>, ProviderError> {
        validate_query(q)?;
        let mut url = self.url(&["available_phone_numbers"])?;
        // Ask for extra rows to make up for owned numbers we will drop.
        let page = (q.limit + q.exclude.len()).min(MAX_SEARCH_LIMIT);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("filter[country_code]", &q.country);
            if let Some(ac) = &q.area_code {
                pairs.append_pair("filter[national_destination_code]", ac);
            }
            if let Some(c) = &q.contains {
                pairs.append_pair("filter[phone_number][contains]", c);
            }
            pairs.append_pair("filter[limit]", &page.to_string());
            // The spelling Telnyx's SDKs send; `filter[features][]` is not the documented form.
            pairs.append_pair("filter[features]", "voice");
            // Geographic numbers only: toll-free or mobile ones have other rules and prices.
            pairs.append_pair("filter[phone_number_type]", "local");
        }
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: DataList<TelnyxAvailable> = ok_json("available_phone_numbers", &resp)?;
        Ok(list
            .data
            .into_iter()
            .filter(|n| is_e164(&n.phone_number) && wanted(q, &n.phone_number))
            .take(q.limit)
            .map(|n| n.into_available(q))
            .collect())
    }

    async fn purchase_impl(&self, phone_number: &str) -> Result<PurchasedNumber, ProviderError> {
        validate_e164("phone_number", phone_number)?;
        let url = self.url(&["number_orders"])?;
        let body = OrderRequest {
            phone_numbers: vec![OrderNumber { phone_number }],
            connection_id: self.connection_id.as_deref(),
        };
        let resp = match http::send(self.authed(self.client.post(url)).json(&body)).await {
            Ok(resp) => resp,
            Err(ProviderError::Transport(e)) => {
                // The order may have been placed before the time-out: look before reporting.
                tracing::warn!(number = phone_number, error = %e, "order outcome unknown; looking it up");
                return self.find_owned(phone_number).await?.ok_or(ProviderError::Transport(e));
            }
            Err(e) => return Err(e),
        };
        let order: Data<Order> = ok_json("number_orders", &resp)?;
        let mut order = order.data;
        if !is_id(&order.id) {
            return Err(ProviderError::Transport(
                "unexpected number_orders response: invalid order id".to_owned(),
            ));
        }
        // Orders are asynchronous: `pending` is not bought yet. Follow it to an outcome.
        let deadline = tokio::time::Instant::now() + ORDER_FOLLOW;
        let mut pause = ORDER_POLL;
        loop {
            match order.outcome(phone_number) {
                OrderOutcome::Success => break,
                OrderOutcome::Failure(requirements) => {
                    return Err(if requirements {
                        ProviderError::Regulatory(format!(
                            "Telnyx needs regulatory documents (address or identity) before it can activate {phone_number}"
                        ))
                    } else {
                        ProviderError::NotAvailable(phone_number.to_owned())
                    });
                }
                OrderOutcome::Pending => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(ProviderError::Pending { provider_ref: order.id });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(2));
            let url = self.url(&["number_orders", &order.id])?;
            let resp = http::send(self.authed(self.client.get(url))).await?;
            let next: Data<Order> = ok_json("number_orders", &resp)?;
            if next.data.id != order.id {
                return Err(ProviderError::Transport(
                    "unexpected number_orders response: other order id".to_owned(),
                ));
            }
            order = next.data;
        }
        Ok(PurchasedNumber {
            phone_number: phone_number.to_owned(),
            provider: ProviderKind::Telnyx,
            provider_ref: order.id,
        })
    }

    /// The account's number `phone_number` (E.164), if the account has it.
    ///
    /// `filter[phone_number]` takes digits only: Telnyx matches nothing when it holds a `+`,
    /// which would make every number look released or foreign.
    pub async fn find_number(&self, phone_number: &str) -> Result<Option<TelnyxOwnedNumber>, ProviderError> {
        validate_e164("phone_number", phone_number)?;
        let digits = phone_number.trim_start_matches('+');
        let mut url = self.url(&["phone_numbers"])?;
        url.query_pairs_mut().append_pair("filter[phone_number]", digits);
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: DataList<OwnedNumber> = ok_json("phone_numbers", &resp)?;
        let Some(owned) = list.data.into_iter().find(|n| n.phone_number == phone_number) else {
            return Ok(None);
        };
        if !is_id(&owned.id) {
            return Err(ProviderError::Transport(
                "unexpected phone_numbers response: invalid id".to_owned(),
            ));
        }
        Ok(Some(TelnyxOwnedNumber {
            id: owned.id,
            phone_number: owned.phone_number,
            connection_id: owned.connection_id.filter(|c| is_id(c)),
        }))
    }

    /// A SIP connection of the account; `None` when there is none with this id.
    pub async fn connection(&self, id: &str) -> Result<Option<TelnyxConnection>, ProviderError> {
        if !is_id(id) {
            return Err(ProviderError::invalid(
                "connection_id",
                "must be 1-64 letters, digits or dashes",
            ));
        }
        let resp = http::send(self.authed(self.client.get(self.url(&["connections", id])?))).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        let c: Data<ConnectionJson> = ok_json("connections", &resp)?;
        let mut conn = TelnyxConnection {
            id: c.data.id,
            record_type: bounded_text(&c.data.record_type),
            user_name: c.data.user_name.as_deref().map(bounded_text),
            targets: Vec::new(),
        };
        // Where Telnyx sends inbound calls: the FQDNs or IPs of the connection.
        let (path, field) = match conn.record_type.as_str() {
            "fqdn_connection" => ("fqdns", "fqdn"),
            "ip_connection" => ("ips", "ip_address"),
            _ => return Ok(Some(conn)),
        };
        let mut url = self.url(&[path])?;
        url.query_pairs_mut().append_pair("filter[connection_id]", &conn.id);
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: DataList<serde_json::Value> = ok_json(path, &resp)?;
        conn.targets = list
            .data
            .iter()
            .take(20)
            .filter_map(|t| {
                let host = t.get(field)?.as_str()?;
                let port = t.get("port").and_then(serde_json::Value::as_u64).unwrap_or(5060);
                Some(format!("{}:{port}", bounded_text(host)))
            })
            .collect();
        Ok(Some(conn))
    }

    async fn release_impl(&self, purchased: &PurchasedNumber) -> Result<(), ProviderError> {
        if purchased.provider != ProviderKind::Telnyx {
            return Err(ProviderError::invalid(
                "provider",
                format!("{} number cannot be released to telnyx", purchased.provider),
            ));
        }
        // The order id is not the number id: look the number up on the account.
        let Some(owned) = self.find_number(&purchased.phone_number).await? else {
            // Not on the account any more (the lookup matches digits exactly): already released.
            return Ok(());
        };
        let url = self.url(&["phone_numbers", &owned.id])?;
        let resp = http::send(self.authed(self.client.delete(url))).await?;
        if resp.is_success() || resp.status == 404 {
            Ok(())
        } else {
            Err(upstream(&resp))
        }
    }
}

/// A number on the Telnyx account (`/v2/phone_numbers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnyxOwnedNumber {
    pub id: String,
    pub phone_number: String,
    /// The SIP connection the number routes to, if any.
    pub connection_id: Option<String>,
}

/// A Telnyx SIP connection as the set-up checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnyxConnection {
    pub id: String,
    /// `fqdn_connection`, `ip_connection`, `credential_connection`.
    pub record_type: String,
    /// Credential user name (credential connections; outbound auth).
    pub user_name: Option<String>,
    /// `host:port` entries inbound calls go to (FQDN and IP connections).
    pub targets: Vec<String>,
}

#[derive(Deserialize)]
struct ConnectionJson {
    id: String,
    record_type: String,
    user_name: Option<String>,
}

enum OrderOutcome {
    Success,
    /// `true` when the failure is unmet regulatory requirements.
    Failure(bool),
    Pending,
}

impl Order {
    fn outcome(&self, phone_number: &str) -> OrderOutcome {
        let number = self.phone_numbers.iter().find(|n| n.phone_number == phone_number);
        let status = number.and_then(|n| n.status.as_deref()).or(self.status.as_deref());
        match status {
            Some("success") => OrderOutcome::Success,
            Some("failure") => OrderOutcome::Failure(number.is_some_and(|n| n.requirements_met == Some(false))),
            _ => OrderOutcome::Pending,
        }
    }
}

/// Telnyx ids (numeric strings, UUIDs): safe as a single URL path segment.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn ok_json<T: serde::de::DeserializeOwned>(what: &str, resp: &Response) -> Result<T, ProviderError> {
    if resp.is_success() {
        http::parse_json(what, resp)
    } else {
        Err(upstream(resp))
    }
}

/// Telnyx error body: `{"errors":[{"code":"10007","title":"...","detail":"..."}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<TelnyxError>,
}

#[derive(Deserialize)]
struct TelnyxError {
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

fn upstream(resp: &Response) -> ProviderError {
    let parts: Vec<String> = serde_json::from_slice::<ErrorBody>(&resp.body)
        .map(|b| b.errors)
        .unwrap_or_default()
        .into_iter()
        .take(4)
        .filter_map(|e| {
            let text = e.detail.or(e.title)?;
            Some(match e.code {
                Some(code) => format!("{} (Telnyx error {})", text, bounded_text(&code)),
                None => text,
            })
        })
        .collect();
    let message = if parts.is_empty() {
        format!("Telnyx returned HTTP {} without an error message", resp.status)
    } else {
        bounded_text(&parts.join("; "))
    };
    match resp.status {
        401 | 403 => ProviderError::Unauthorized(message),
        status => ProviderError::Upstream { status, message },
    }
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct DataList<T> {
    #[serde(default)]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct TelnyxAvailable {
    phone_number: String,
    #[serde(default)]
    region_information: Vec<RegionInfo>,
    cost_information: Option<CostInfo>,
    #[serde(default)]
    features: Vec<Feature>,
}

#[derive(Deserialize)]
struct RegionInfo {
    region_type: Option<String>,
    region_name: Option<String>,
}

#[derive(Deserialize)]
struct CostInfo {
    monthly_cost: Option<String>,
}

#[derive(Deserialize)]
struct Feature {
    name: String,
}

impl TelnyxAvailable {
    fn region(&self, kind: &str) -> Option<String> {
        self.region_information
            .iter()
            .find(|r| r.region_type.as_deref() == Some(kind))
            .and_then(|r| r.region_name.as_deref())
            .map(bounded_text)
    }

    fn into_available(self, q: &SearchQuery) -> AvailableNumber {
        let country = self
            .region("country_code")
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .unwrap_or_else(|| q.country.clone());
        let area_code = nanp_area_code(&self.phone_number)
            .map(str::to_owned)
            .or_else(|| q.area_code.clone());
        AvailableNumber {
            friendly_name: nanp_friendly_name(&self.phone_number),
            country,
            region: self.region("state"),
            locality: self.region("location").or_else(|| self.region("rate_center")),
            area_code,
            capabilities: self
                .features
                .iter()
                .take(16)
                .map(|f| bounded_text(&f.name).to_ascii_lowercase())
                .collect(),
            monthly_cost: self
                .cost_information
                .and_then(|c| c.monthly_cost)
                .map(|c| bounded_text(&c)),
            phone_number: self.phone_number,
        }
    }
}

#[derive(Serialize)]
struct OrderRequest<'a> {
    phone_numbers: Vec<OrderNumber<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: Option<&'a str>,
}

#[derive(Serialize)]
struct OrderNumber<'a> {
    phone_number: &'a str,
}

#[derive(Deserialize)]
struct Order {
    id: String,
    status: Option<String>,
    #[serde(default)]
    phone_numbers: Vec<OrderedNumber>,
}

#[derive(Deserialize)]
struct OrderedNumber {
    phone_number: String,
    status: Option<String>,
    requirements_met: Option<bool>,
}

#[derive(Deserialize)]
struct OwnedNumber {
    id: String,
    phone_number: String,
    connection_id: Option<String>,
}

impl NumberProvider for TelnyxProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Telnyx
    }

    fn search<'a>(&'a self, q: &'a SearchQuery) -> BoxFuture<'a, Result<Vec<AvailableNumber>, ProviderError>> {
        Box::pin(self.search_impl(q))
    }

    fn purchase<'a>(&'a self, phone_number: &'a str) -> BoxFuture<'a, Result<PurchasedNumber, ProviderError>> {
        Box::pin(self.purchase_impl(phone_number))
    }

    fn release<'a>(&'a self, purchased: &'a PurchasedNumber) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.release_impl(purchased))
    }
    /// Same lookup as a purchase whose outcome is unknown: the account's own number list.
    fn find_owned<'a>(
        &'a self,
        phone_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<PurchasedNumber>, ProviderError>> {
        Box::pin(async move {
            Ok(self.find_number(phone_number).await?.map(|n| PurchasedNumber {
                phone_number: phone_number.to_owned(),
                provider: ProviderKind::Telnyx,
                provider_ref: n.id,
            }))
        })
    }
}
