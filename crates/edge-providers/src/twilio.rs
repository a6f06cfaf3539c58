//! Twilio REST API 2010-04-01 client: AvailablePhoneNumbers (search), IncomingPhoneNumbers
//! (purchase, release). HTTP basic auth `AccountSid:AuthToken`.

use reqwest::Url;
use serde::Deserialize;

use crate::http::{self, Response};
use crate::validate::{bounded_text, is_e164, is_nanp_country, nanp_area_code, validate_e164, validate_query, wanted};
use crate::{
    AvailableNumber, BoxFuture, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery,
    SecretString, MAX_SEARCH_LIMIT,
};

pub const TWILIO_DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Elastic SIP Trunking lives on its own host; a non-default `base_url` (a test fake) serves both.
const TWILIO_TRUNKING_URL: &str = "https://trunking.twilio.com";
/// "Number not available" errors: 21422 (not available), 21452 (no numbers found/not purchasable).
const NOT_AVAILABLE_CODES: [u64; 2] = [21422, 21452];
/// Purchases refused for want of an address or regulatory bundle.
const REGULATORY_CODES: [u64; 6] = [21613, 21615, 21631, 21649, 21650, 21651];
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
    trunking_url: Url,
    client: reqwest::Client,
}

/// A number on the Twilio account (IncomingPhoneNumbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioOwnedNumber {
    /// `PN...`
    pub sid: String,
    pub phone_number: String,
    /// The Elastic SIP trunk the number is attached to, if any.
    pub trunk_sid: Option<String>,
}

/// An Elastic SIP trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioTrunk {
    /// `TK...`
    pub sid: String,
    /// Termination domain (`yourtrunk.pstn.twilio.com`).
    pub domain_name: Option<String>,
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
        let trunking = if base.trim_end_matches('/') == TWILIO_DEFAULT_BASE_URL {
            TWILIO_TRUNKING_URL
        } else {
            base
        };
        Ok(Self {
            base_url: http::parse_base_url("base_url", base)?,
            trunking_url: http::parse_base_url("base_url", trunking)?,
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
            // Twilio's AreaCode filter is for the US and Canada only.
            if let Some(ac) = q.area_code.as_ref().filter(|_| is_nanp_country(&q.country)) {
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
        let list: AvailableList = match ok_json("AvailablePhoneNumbers", &resp) {
            Ok(list) => list,
            // 21452 "No phone numbers found": an empty result, not a failure.
            Err(ProviderError::NotAvailable(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
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
        let resp = match http::send(self.authed(self.client.post(url)).form(&form)).await {
            Ok(resp) => resp,
            Err(ProviderError::Transport(e)) => {
                // The sale may have gone through before the time-out: look before reporting.
                tracing::warn!(number = phone_number, error = %e, "purchase outcome unknown; looking it up");
                return self.find_owned(phone_number).await?.ok_or(ProviderError::Transport(e));
            }
            Err(e) => return Err(e),
        };
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

    /// The account's IncomingPhoneNumber for `phone_number` (E.164), if the account has it.
    pub async fn find_number(&self, phone_number: &str) -> Result<Option<TwilioOwnedNumber>, ProviderError> {
        validate_e164("phone_number", phone_number)?;
        let mut url = self.url(&["IncomingPhoneNumbers.json"])?;
        url.query_pairs_mut().append_pair("PhoneNumber", phone_number);
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: IncomingList = ok_json("IncomingPhoneNumbers", &resp)?;
        Ok(list
            .incoming_phone_numbers
            .into_iter()
            .find(|n| n.phone_number == phone_number && is_sid("PN", &n.sid))
            .map(|n| TwilioOwnedNumber {
                sid: n.sid,
                phone_number: n.phone_number,
                trunk_sid: n.trunk_sid.filter(|t| is_sid("TK", t)),
            }))
    }

    fn trunk_url(&self, tail: &[&str]) -> Result<Url, ProviderError> {
        let mut segments = vec!["v1", "Trunks"];
        segments.extend_from_slice(tail);
        http::endpoint(&self.trunking_url, &segments)
    }

    /// Every Elastic SIP trunk of the account (first page, up to 50).
    pub async fn trunks(&self) -> Result<Vec<TwilioTrunk>, ProviderError> {
        let mut url = self.trunk_url(&[])?;
        url.query_pairs_mut().append_pair("PageSize", "50");
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: TrunkList = ok_json("Trunks", &resp)?;
        Ok(list
            .trunks
            .into_iter()
            .filter(|t| is_sid("TK", &t.sid))
            .map(Into::into)
            .collect())
    }

    /// One trunk; `None` when the account has no such trunk.
    pub async fn trunk(&self, sid: &str) -> Result<Option<TwilioTrunk>, ProviderError> {
        if !is_sid("TK", sid) {
            return Err(ProviderError::invalid(
                "trunk_sid",
                "must be TK followed by 32 hex digits",
            ));
        }
        let resp = http::send(self.authed(self.client.get(self.trunk_url(&[sid])?))).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        let t: TrunkJson = ok_json("Trunks", &resp)?;
        Ok(Some(t.into()))
    }

    /// The SIP URLs of the trunk's origination URIs (where Twilio sends inbound calls).
    pub async fn origination_urls(&self, trunk_sid: &str) -> Result<Vec<String>, ProviderError> {
        let url = self.trunk_url(&[trunk_sid, "OriginationUrls"])?;
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let list: OriginationList = ok_json("OriginationUrls", &resp)?;
        Ok(list
            .origination_urls
            .into_iter()
            .map(|o| bounded_text(&o.sip_url))
            .collect())
    }

    /// Adds an origination URI (priority 10, weight 10, as the set-up guide says).
    pub async fn add_origination_url(&self, trunk_sid: &str, sip_url: &str) -> Result<(), ProviderError> {
        let url = self.trunk_url(&[trunk_sid, "OriginationUrls"])?;
        let form = [
            ("FriendlyName", "OneInbox"),
            ("SipUrl", sip_url),
            ("Priority", "10"),
            ("Weight", "10"),
            ("Enabled", "true"),
        ];
        let resp = http::send(self.authed(self.client.post(url)).form(&form)).await?;
        ok_json::<serde_json::Value>("OriginationUrls", &resp).map(drop)
    }

    /// Attaches an IncomingPhoneNumber (`PN...`) to a trunk.
    pub async fn attach_number(&self, trunk_sid: &str, number_sid: &str) -> Result<(), ProviderError> {
        let url = self.trunk_url(&[trunk_sid, "PhoneNumbers"])?;
        let resp = http::send(
            self.authed(self.client.post(url))
                .form(&[("PhoneNumberSid", number_sid)]),
        )
        .await?;
        ok_json::<serde_json::Value>("PhoneNumbers", &resp).map(drop)
    }

    /// Usernames of every credential in the credential lists attached to the trunk.
    pub async fn trunk_usernames(&self, trunk_sid: &str) -> Result<Vec<String>, ProviderError> {
        let url = self.trunk_url(&[trunk_sid, "CredentialLists"])?;
        let resp = http::send(self.authed(self.client.get(url))).await?;
        let lists: CredentialListList = ok_json("CredentialLists", &resp)?;
        let mut names = Vec::new();
        for list in lists.credential_lists.iter().take(10).filter(|l| is_sid("CL", &l.sid)) {
            let url = self.url(&["SIP", "CredentialLists", &list.sid, "Credentials.json"])?;
            let resp = http::send(self.authed(self.client.get(url))).await?;
            let creds: CredentialList = ok_json("Credentials", &resp)?;
            names.extend(creds.credentials.into_iter().map(|c| bounded_text(&c.username)));
        }
        Ok(names)
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
    let (code, message) = match serde_json::from_slice::<TwilioError>(&resp.body) {
        Ok(TwilioError { code, message: Some(m) }) => match code {
            Some(c) => (Some(c), format!("{} (Twilio error {c})", bounded_text(&m))),
            None => (None, bounded_text(&m)),
        },
        _ => (
            None,
            format!("Twilio returned HTTP {} without an error message", resp.status),
        ),
    };
    match code {
        Some(c) if NOT_AVAILABLE_CODES.contains(&c) => return ProviderError::NotAvailable(message),
        Some(c) if REGULATORY_CODES.contains(&c) => return ProviderError::Regulatory(message),
        _ => {}
    }
    match resp.status {
        401 | 403 => ProviderError::Unauthorized(message),
        status => ProviderError::Upstream { status, message },
    }
}

#[derive(Deserialize)]
struct IncomingList {
    #[serde(default)]
    incoming_phone_numbers: Vec<IncomingJson>,
}

#[derive(Deserialize)]
struct IncomingJson {
    sid: String,
    phone_number: String,
    trunk_sid: Option<String>,
}

#[derive(Deserialize)]
struct TrunkList {
    #[serde(default)]
    trunks: Vec<TrunkJson>,
}

#[derive(Deserialize)]
struct TrunkJson {
    sid: String,
    domain_name: Option<String>,
}

impl From<TrunkJson> for TwilioTrunk {
    fn from(t: TrunkJson) -> Self {
        TwilioTrunk {
            sid: t.sid,
            domain_name: t.domain_name.as_deref().map(bounded_text),
        }
    }
}

#[derive(Deserialize)]
struct OriginationList {
    #[serde(default)]
    origination_urls: Vec<OriginationJson>,
}

#[derive(Deserialize)]
struct OriginationJson {
    sip_url: String,
}

#[derive(Deserialize)]
struct CredentialListList {
    #[serde(default)]
    credential_lists: Vec<SidJson>,
}

#[derive(Deserialize)]
struct SidJson {
    sid: String,
}

#[derive(Deserialize)]
struct CredentialList {
    #[serde(default)]
    credentials: Vec<CredentialJson>,
}

#[derive(Deserialize)]
struct CredentialJson {
    username: String,
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
    /// Same lookup as a purchase whose outcome is unknown: the account's own number list.
    fn find_owned<'a>(
        &'a self,
        phone_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<PurchasedNumber>, ProviderError>> {
        Box::pin(async move {
            Ok(self.find_number(phone_number).await?.map(|n| PurchasedNumber {
                phone_number: phone_number.to_owned(),
                provider: ProviderKind::Twilio,
                provider_ref: n.sid,
            }))
        })
    }
}
