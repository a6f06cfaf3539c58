//! Twilio REST API 2010-04-01 client: AvailablePhoneNumbers (search), IncomingPhoneNumbers
//! (purchase, release). HTTP basic auth `AccountSid:AuthToken`.

use reqwest::Url;
use serde::Deserialize;

use crate::http::{self, Response};
use crate::validate::{bounded_text, is_e164, nanp_area_code, validate_e164, validate_query, wanted};
use crate::{
    AvailableNumber, BoxFuture, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery,
    SecretString, MAX_SEARCH_LIMIT,
};

pub const TWILIO_DEFAULT_BASE_URL: &str = "https://api.twilio.com";
const API_VERSION: &str = "2010-04-01";

/// Operator configuration for a Twilio account.
#[derive(Debug, Clone, Deserialize)]
pub struct TwilioConfig {
    /// `AC` + 32 hex digits.
    pub account_sid: String,
    pub auth_token: SecretString,
    /// Elastic SIP Trunk (`TK...`) purchased numbers are attached to, if any.
    #[serde(default)]
    pub trunk_sid: Option<String>,
    /// Defaults to [`TWILIO_DEFAULT_BASE_URL`]; tests point it at a local server.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Twilio-backed [`NumberProvider`]. `Debug` never shows the auth token.
#[derive(Debug, Clone)]
pub struct TwilioProvider {
    account_sid: String,
    auth_token: SecretString,
    trunk_sid: Option<String>,
    base_url: Url,
    client: reqwest::Client,
}

impl TwilioProvider {
    pub fn new(config: TwilioConfig) -> Result<Self, ProviderError> {
        if !is_sid("AC", &config.account_sid) {
            return Err(ProviderError::invalid(
                "account_sid",
                "must be AC followed by 32 hex digits",
            ));
        }
        if config.auth_token.expose().is_empty() {
            return Err(ProviderError::invalid("auth_token", "must not be empty"));
        }
        if let Some(trunk) = &config.trunk_sid {
            if !is_sid("TK", trunk) {
                return Err(ProviderError::invalid(
                    "trunk_sid",
                    "must be TK followed by 32 hex digits",
                ));
            }
        }
        let base = config.base_url.as_deref().unwrap_or(TWILIO_DEFAULT_BASE_URL);
        Ok(Self {
            base_url: http::parse_base_url("base_url", base)?,
            account_sid: config.account_sid,
            auth_token: config.auth_token,
            trunk_sid: config.trunk_sid,
            client: http::client()?,
        })
    }

    fn url(&self, tail: &[&str]) -> Result<Url, ProviderError> {
        let mut segments = vec![API_VERSION, "Accounts", self.account_sid.as_str()];
        segments.extend_from_slice(tail);
        http::endpoint(&self.base_url, &segments)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(&self.account_sid, Some(self.auth_token.expose()))
    }

    async fn search_impl(&self, q: &SearchQuery) -> Result<Vec<AvailableNumber>, ProviderError> {
        validate_query(q)?;
        let mut url = self.url(&["AvailablePhoneNumbers", &q.country, "Local.json"])?;
        // Ask for extra rows to make up for owned numbers we will drop.
        let page = (q.limit + q.exclude.len()).min(MAX_SEARCH_LIMIT);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(ac) = &q.area_code {
                pairs.append_pair("AreaCode", ac);
            }
            // Twilio patterns need at least 2 characters; 1 digit is filtered locally.
            if let Some(c) = q.contains.as_deref().filter(|c| c.len() >= 2) {
                pairs.append_pair("Contains", c);
            }
            pairs.append_pair("PageSize", &page.to_string());
            pairs.append_pair("VoiceEnabled", "true");
        }
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: AvailableList = ok_json("AvailablePhoneNumbers", &resp)?;
        Ok(list
            .available_phone_numbers
            .into_iter()
            .filter(|n| is_e164(&n.phone_number) && wanted(q, &n.phone_number))
            .take(q.limit)
            .map(|n| n.into_available(q))
            .collect())
    }

    async fn purchase_impl(&self, phone_number: &str) -> Result<PurchasedNumber, ProviderError> {
        validate_e164("phone_number", phone_number)?;
        let url = self.url(&["IncomingPhoneNumbers.json"])?;
        let mut form = vec![("PhoneNumber", phone_number)];
        if let Some(trunk) = &self.trunk_sid {
            form.push(("TrunkSid", trunk.as_str()));
        }
        let resp = http::send(self.authed(self.client.post(url)).form(&form)).await?;
        let created: Incoming = ok_json("IncomingPhoneNumbers", &resp)?;
        if !is_sid("PN", &created.sid) {
            return Err(ProviderError::Transport(
                "unexpected IncomingPhoneNumbers response: sid is not a PN sid".to_owned(),
            ));
        }
        Ok(PurchasedNumber {
            phone_number: phone_number.to_owned(),
            provider: ProviderKind::Twilio,
            provider_ref: created.sid,
        })
    }

    async fn release_impl(&self, purchased: &PurchasedNumber) -> Result<(), ProviderError> {
        if purchased.provider != ProviderKind::Twilio {
            return Err(ProviderError::invalid(
                "provider",
                format!("{} number cannot be released to twilio", purchased.provider),
            ));
        }
        if !is_sid("PN", &purchased.provider_ref) {
            return Err(ProviderError::invalid(
                "provider_ref",
                "must be a Twilio IncomingPhoneNumber sid (PN...)",
            ));
        }
        let file = format!("{}.json", purchased.provider_ref);
        let url = self.url(&["IncomingPhoneNumbers", &file])?;
        let resp = http::send(self.authed(self.client.delete(url))).await?;
        // 404: the number is already gone from the account, which is what release wants.
        if resp.is_success() || resp.status == 404 {
            Ok(())
        } else {
            Err(upstream(&resp))
        }
    }
}

/// `prefix` + 32 hex digits: Twilio's SID shape. Also keeps SIDs safe as path segments.
fn is_sid(prefix: &str, sid: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn ok_json<T: serde::de::DeserializeOwned>(what: &str, resp: &Response) -> Result<T, ProviderError> {
    if resp.is_success() {
        http::parse_json(what, resp)
    } else {
        Err(upstream(resp))
    }
}

/// Twilio error body: `{"code":21452,"message":"...","more_info":"...","status":400}`.
#[derive(Deserialize)]
struct TwilioError {
    code: Option<u64>,
    message: Option<String>,
}

fn upstream(resp: &Response) -> ProviderError {
    let message = match serde_json::from_slice::<TwilioError>(&resp.body) {
        Ok(TwilioError { code, message: Some(m) }) => match code {
            Some(c) => format!("{} (Twilio error {c})", bounded_text(&m)),
            None => bounded_text(&m),
        },
        _ => format!("Twilio returned HTTP {} without an error message", resp.status),
    };
    ProviderError::Upstream {
        status: resp.status,
        message,
    }
}

#[derive(Deserialize)]
struct AvailableList {
    #[serde(default)]
    available_phone_numbers: Vec<TwilioAvailable>,
}

#[derive(Deserialize)]
struct TwilioAvailable {
    phone_number: String,
    friendly_name: Option<String>,
    locality: Option<String>,
    region: Option<String>,
    iso_country: Option<String>,
    #[serde(default)]
    capabilities: Capabilities,
}

/// The API answers `voice`/`SMS`/`MMS`; some doc samples are all lower case: accept both.
#[derive(Default, Deserialize)]
struct Capabilities {
    #[serde(default, alias = "Voice")]
    voice: Option<bool>,
    #[serde(default, rename = "SMS", alias = "sms")]
    sms: Option<bool>,
    #[serde(default, rename = "MMS", alias = "mms")]
    mms: Option<bool>,
    #[serde(default, alias = "Fax")]
    fax: Option<bool>,
}

impl TwilioAvailable {
    fn into_available(self, q: &SearchQuery) -> AvailableNumber {
        let c = &self.capabilities;
        let capabilities = [("voice", c.voice), ("sms", c.sms), ("mms", c.mms), ("fax", c.fax)]
            .into_iter()
            .filter(|(_, on)| *on == Some(true))
            .map(|(name, _)| name.to_owned())
            .collect();
        let area_code = nanp_area_code(&self.phone_number)
            .map(str::to_owned)
            .or_else(|| q.area_code.clone());
        AvailableNumber {
            friendly_name: self.friendly_name.as_deref().map(bounded_text),
            country: self
                .iso_country
                .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
                .unwrap_or_else(|| q.country.clone()),
            region: self.region.as_deref().map(bounded_text),
            locality: self.locality.as_deref().map(bounded_text),
            area_code,
            capabilities,
            monthly_cost: None,
            phone_number: self.phone_number,
        }
    }
}

#[derive(Deserialize)]
struct Incoming {
    sid: String,
}

impl NumberProvider for TwilioProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Twilio
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
}
