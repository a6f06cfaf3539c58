//! Local fake Twilio and Telnyx HTTP servers on 127.0.0.1:0 that follow the providers' public
//! API documents: paths, auth, JSON shapes, filter rules and error codes. Enough of each API
//! for the edge's clients: numbers (search, buy, list with filters, release), Twilio Elastic
//! SIP trunking (trunks, origination URLs, numbers, credential lists) and Telnyx connections.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn query(uri: &Uri) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x{uri}")).unwrap();
    url.query_pairs().into_owned().collect()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).unwrap();
    url.query_pairs().into_owned().collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn json_resp(status: u16, v: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(v)).into_response()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn hex32(n: u64) -> String {
    format!("{n:032x}")
}

// ---------------------------------------------------------------- Twilio

#[derive(Debug, Clone, Default)]
pub struct TwTrunk {
    pub sid: String,
    pub domain_name: String,
    pub origination_urls: Vec<String>,
    pub credential_lists: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TwNumber {
    pub sid: String,
    pub phone_number: String,
    pub trunk_sid: Option<String>,
}

#[derive(Debug, Default)]
pub struct TwAccount {
    pub auth_token: String,
    pub numbers: Vec<TwNumber>,
    pub trunks: Vec<TwTrunk>,
    /// Credential list sid -> usernames.
    pub credential_lists: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
pub struct TwilioState {
    pub accounts: HashMap<String, TwAccount>,
    /// Numbers for sale (E.164).
    pub available: Vec<String>,
    /// Numbers that need an address to be bought (Twilio error 21631).
    pub needs_address: Vec<String>,
    /// Listed by search (stale inventory) but sold to someone else: purchase gives 21422.
    pub sold_elsewhere: Vec<String>,
    pub next_id: u64,
    /// (method, path) of every request.
    pub log: Vec<(String, String)>,
}

pub struct FakeTwilio {
    pub base_url: String,
    pub state: Arc<Mutex<TwilioState>>,
    /// Answer this many next requests with 429.
    pub rate_limit: Arc<AtomicU32>,
    /// Delay purchases by this much (ms) after they are made.
    pub purchase_delay_ms: Arc<AtomicU32>,
    /// Purchases that went through.
    pub purchases: Arc<AtomicU32>,
}

pub fn tw_sid(prefix: &str, n: u64) -> String {
    format!("{prefix}{}", hex32(n))
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let state = Arc::new(Mutex::new(TwilioState {
            next_id: 1000,
            ..Default::default()
        }));
        let rate_limit = Arc::new(AtomicU32::new(0));
        let purchase_delay_ms = Arc::new(AtomicU32::new(0));
        let purchases = Arc::new(AtomicU32::new(0));
        let shared = (
            state.clone(),
            rate_limit.clone(),
            purchase_delay_ms.clone(),
            purchases.clone(),
        );
        let app = Router::new().fallback(twilio_handler).with_state(shared);
        FakeTwilio {
            base_url: serve(app).await,
            state,
            rate_limit,
            purchase_delay_ms,
            purchases,
        }
    }

    /// Adds an account `AC..n`, returns (sid, token).
    pub fn account(&self, n: u64) -> (String, String) {
        let sid = tw_sid("AC", n);
        let token = format!("token{n}");
        self.state.lock().unwrap().accounts.insert(
            sid.clone(),
            TwAccount {
                auth_token: token.clone(),
                ..Default::default()
            },
        );
        (sid, token)
    }

    pub fn give_number(&self, account: &str, phone: &str, trunk: Option<&str>) -> String {
        let mut st = self.state.lock().unwrap();
        st.next_id += 1;
        let sid = tw_sid("PN", st.next_id);
        st.accounts.get_mut(account).unwrap().numbers.push(TwNumber {
            sid: sid.clone(),
            phone_number: phone.into(),
            trunk_sid: trunk.map(str::to_owned),
        });
        sid
    }

    pub fn add_trunk(&self, account: &str, domain: &str, origination: &[&str], usernames: &[&str]) -> String {
        let mut st = self.state.lock().unwrap();
        st.next_id += 1;
        let sid = tw_sid("TK", st.next_id);
        st.next_id += 1;
        let cl = tw_sid("CL", st.next_id);
        let acct = st.accounts.get_mut(account).unwrap();
        acct.credential_lists
            .insert(cl.clone(), usernames.iter().map(|u| u.to_string()).collect());
        acct.trunks.push(TwTrunk {
            sid: sid.clone(),
            domain_name: domain.into(),
            origination_urls: origination.iter().map(|u| u.to_string()).collect(),
            credential_lists: if usernames.is_empty() { vec![] } else { vec![cl] },
        });
        sid
    }

    pub fn numbers_of(&self, account: &str) -> Vec<TwNumber> {
        self.state.lock().unwrap().accounts[account].numbers.clone()
    }
}

type TwShared = (Arc<Mutex<TwilioState>>, Arc<AtomicU32>, Arc<AtomicU32>, Arc<AtomicU32>);

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = decode_b64(b64)?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.into(), p.into()))
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn tw_error(status: u16, code: u32, message: &str) -> Response {
    json_resp(
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

fn tw_number_json(account: &str, n: &TwNumber) -> Value {
    json!({"sid": n.sid, "account_sid": account, "phone_number": n.phone_number, "friendly_name": n.phone_number,
           "trunk_sid": n.trunk_sid, "voice_url": null, "capabilities": {"voice": true, "sms": true, "mms": false, "fax": false}})
}

async fn twilio_handler(
    State((state, rate, delay, purchases)): State<TwShared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .lock()
        .unwrap()
        .log
        .push((method.to_string(), uri.path().to_owned()));
    if rate.load(Ordering::SeqCst) > 0 {
        rate.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
        )
            .into_response();
    }
    let Some((user, pass)) = basic_auth(&headers) else {
        return tw_error(401, 20003, "Authenticate");
    };
    {
        let st = state.lock().unwrap();
        match st.accounts.get(&user) {
            Some(a) if a.auth_token == pass => {}
            _ => return tw_error(401, 20003, "Authenticate"),
        }
    }
    let path = uri.path().to_owned();
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let q = query(&uri);
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["2010-04-01", "Accounts", acct, "AvailablePhoneNumbers", country, "Local.json"]) => {
            if *acct != user {
                return tw_error(404, 20404, "The requested resource was not found");
            }
            // Twilio: AreaCode applies to US and Canada only; elsewhere it is an error.
            if get(&q, "AreaCode").is_some() && !matches!(*country, "US" | "CA") {
                return tw_error(400, 21452, "AreaCode is only supported for US and Canada numbers");
            }
            let st = state.lock().unwrap();
            let page: usize = get(&q, "PageSize").and_then(|p| p.parse().ok()).unwrap_or(50);
            let ac = get(&q, "AreaCode");
            let list: Vec<Value> = st
                .sold_elsewhere
                .iter()
                .chain(st.available.iter())
                .filter(|n| ac.is_none_or(|a| n.starts_with(&format!("+1{a}"))))
                .take(page)
                .map(|n| json!({"phone_number": n, "friendly_name": n, "iso_country": country, "region": "CA", "locality": "San Francisco",
                                "capabilities": {"voice": true, "SMS": true, "MMS": false}}))
                .collect();
            json_resp(200, json!({"available_phone_numbers": list, "uri": path}))
        }
        ("GET", ["2010-04-01", "Accounts", acct, "IncomingPhoneNumbers.json"]) => {
            let st = state.lock().unwrap();
            let Some(a) = st.accounts.get(*acct).filter(|_| *acct == user) else {
                return tw_error(404, 20404, "The requested resource was not found");
            };
            let want = get(&q, "PhoneNumber");
            let list: Vec<Value> = a
                .numbers
                .iter()
                .filter(|n| want.is_none_or(|w| n.phone_number.contains(w.trim_start_matches('+'))))
                .map(|n| tw_number_json(acct, n))
                .collect();
            json_resp(200, json!({"incoming_phone_numbers": list, "page": 0, "page_size": 50}))
        }
        ("POST", ["2010-04-01", "Accounts", acct, "IncomingPhoneNumbers.json"]) => {
            if *acct != user {
                return tw_error(404, 20404, "The requested resource was not found");
            }
            let f = form(&body);
            let Some(phone) = get(&f, "PhoneNumber").map(str::to_owned) else {
                return tw_error(400, 21421, "PhoneNumber is invalid");
            };
            let needs_address = state.lock().unwrap().needs_address.contains(&phone);
            if needs_address {
                // A slow provider refuses as slowly as it sells.
                let d = delay.load(Ordering::SeqCst);
                if d > 0 {
                    tokio::time::sleep(Duration::from_millis(d.into())).await;
                }
                return tw_error(400, 21631, "Phone Number Requires an Address");
            }
            let n = {
                let mut st = state.lock().unwrap();
                let Some(pos) = st.available.iter().position(|n| *n == phone) else {
                    return tw_error(400, 21422, "PhoneNumber requested is not available");
                };
                st.available.remove(pos);
                st.next_id += 1;
                let n = TwNumber {
                    sid: tw_sid("PN", st.next_id),
                    phone_number: phone,
                    trunk_sid: get(&f, "TrunkSid").map(str::to_owned),
                };
                st.accounts.get_mut(*acct).unwrap().numbers.push(n.clone());
                n
            };
            purchases.fetch_add(1, Ordering::SeqCst);
            let d = delay.load(Ordering::SeqCst);
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d.into())).await;
            }
            json_resp(201, tw_number_json(acct, &n))
        }
        ("DELETE", ["2010-04-01", "Accounts", acct, "IncomingPhoneNumbers", file]) => {
            let mut st = state.lock().unwrap();
            let Some(a) = st.accounts.get_mut(*acct).filter(|_| *acct == user) else {
                return tw_error(404, 20404, "The requested resource was not found");
            };
            let sid = file.trim_end_matches(".json");
            match a.numbers.iter().position(|n| n.sid == sid) {
                Some(i) => {
                    a.numbers.remove(i);
                    StatusCode::NO_CONTENT.into_response()
                }
                None => tw_error(404, 20404, "The requested resource was not found"),
            }
        }
        ("GET", ["2010-04-01", "Accounts", acct, "SIP", "CredentialLists", cl, "Credentials.json"]) => {
            let st = state.lock().unwrap();
            let Some(users) = st
                .accounts
                .get(*acct)
                .filter(|_| *acct == user)
                .and_then(|a| a.credential_lists.get(*cl))
            else {
                return tw_error(404, 20404, "The requested resource was not found");
            };
            let list: Vec<Value> = users.iter().map(|u| json!({"sid": "CR0", "username": u})).collect();
            json_resp(200, json!({"credentials": list}))
        }
        ("GET", ["v1", "Trunks"]) => {
            let st = state.lock().unwrap();
            let list: Vec<Value> = st.accounts[&user]
                .trunks
                .iter()
                .map(|t| json!({"sid": t.sid, "domain_name": t.domain_name, "account_sid": user}))
                .collect();
            json_resp(200, json!({"trunks": list, "meta": {"page": 0}}))
        }
        (m, ["v1", "Trunks", tk, rest @ ..]) => {
            let mut st = state.lock().unwrap();
            let acct = st.accounts.get_mut(&user).unwrap();
            let Some(ti) = acct.trunks.iter().position(|t| t.sid == *tk) else {
                return tw_error(404, 20404, "The requested resource was not found");
            };
            match (m, rest) {
                ("GET", []) => {
                    let t = &acct.trunks[ti];
                    json_resp(
                        200,
                        json!({"sid": t.sid, "domain_name": t.domain_name, "account_sid": user}),
                    )
                }
                ("GET", ["OriginationUrls"]) => {
                    let list: Vec<Value> = acct.trunks[ti]
                        .origination_urls
                        .iter()
                        .map(|u| json!({"sip_url": u, "priority": 10, "weight": 10, "enabled": true}))
                        .collect();
                    json_resp(200, json!({"origination_urls": list}))
                }
                ("POST", ["OriginationUrls"]) => {
                    let f = form(&body);
                    for req in ["FriendlyName", "SipUrl", "Priority", "Weight", "Enabled"] {
                        if get(&f, req).is_none() {
                            return tw_error(
                                400,
                                20001,
                                &format!("Missing required parameter {req} in the post body"),
                            );
                        }
                    }
                    let url = get(&f, "SipUrl").unwrap().to_owned();
                    acct.trunks[ti].origination_urls.push(url.clone());
                    json_resp(201, json!({"sip_url": url, "trunk_sid": tk}))
                }
                ("POST", ["PhoneNumbers"]) => {
                    let f = form(&body);
                    let Some(pn) = get(&f, "PhoneNumberSid") else {
                        return tw_error(400, 20001, "Missing required parameter PhoneNumberSid in the post body");
                    };
                    let Some(n) = acct.numbers.iter_mut().find(|n| n.sid == pn) else {
                        return tw_error(404, 20404, "The requested resource was not found");
                    };
                    n.trunk_sid = Some(tk.to_string());
                    json_resp(201, json!({"sid": pn, "trunk_sid": tk}))
                }
                ("GET", ["CredentialLists"]) => {
                    let list: Vec<Value> = acct.trunks[ti]
                        .credential_lists
                        .iter()
                        .map(|c| json!({"sid": c}))
                        .collect();
                    json_resp(200, json!({"credential_lists": list}))
                }
                _ => tw_error(404, 20404, "The requested resource was not found"),
            }
        }
        _ => tw_error(404, 20404, "The requested resource was not found"),
    }
}

// ---------------------------------------------------------------- Telnyx

#[derive(Debug, Clone)]
pub struct TxNumber {
    pub id: String,
    pub phone_number: String,
    pub connection_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TxConnection {
    pub id: String,
    pub record_type: String,
    pub user_name: Option<String>,
    pub fqdns: Vec<(String, u16)>,
}

#[derive(Debug, Clone)]
pub struct TxOrder {
    pub id: String,
    pub account: String,
    pub phone_number: String,
    pub connection_id: Option<String>,
    /// Status polls left before the order settles.
    pub polls_left: u32,
    pub outcome_success: bool,
    pub status: String,
}

#[derive(Debug, Default)]
pub struct TelnyxState {
    /// API key -> numbers.
    pub accounts: HashMap<String, Vec<TxNumber>>,
    pub connections: HashMap<String, TxConnection>,
    /// (E.164, type, features) for sale.
    pub available: Vec<(String, &'static str, Vec<&'static str>)>,
    pub orders: Vec<TxOrder>,
    /// Order status polls before an order settles.
    pub order_polls: u32,
    /// Numbers whose orders fail.
    pub failing: Vec<String>,
    pub next_id: u64,
    pub deletes: u32,
}

pub struct FakeTelnyx {
    pub base_url: String,
    pub state: Arc<Mutex<TelnyxState>>,
}

impl FakeTelnyx {
    pub async fn start() -> FakeTelnyx {
        let state = Arc::new(Mutex::new(TelnyxState {
            next_id: 5000,
            ..Default::default()
        }));
        let app = Router::new().fallback(telnyx_handler).with_state(state.clone());
        FakeTelnyx {
            base_url: serve(app).await,
            state,
        }
    }

    pub fn account(&self, key: &str) {
        self.state.lock().unwrap().accounts.insert(key.into(), Vec::new());
    }

    pub fn give_number(&self, key: &str, phone: &str, connection: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        st.next_id += 1;
        let id = st.next_id.to_string();
        st.accounts.get_mut(key).unwrap().push(TxNumber {
            id,
            phone_number: phone.into(),
            connection_id: connection.map(str::to_owned),
        });
    }

    pub fn numbers_of(&self, key: &str) -> Vec<TxNumber> {
        self.state.lock().unwrap().accounts[key].clone()
    }
}

fn tx_error(status: u16, code: &str, title: &str, detail: &str) -> Response {
    json_resp(
        status,
        json!({"errors": [{"code": code, "title": title, "detail": detail}]}),
    )
}

fn order_json(o: &TxOrder) -> Value {
    json!({"data": {"id": o.id, "record_type": "number_order", "status": o.status, "phone_numbers_count": 1,
        "connection_id": o.connection_id,
        "phone_numbers": [{"id": format!("{}-n", o.id), "record_type": "number_order_phone_number", "phone_number": o.phone_number,
            "regulatory_requirements": [], "requirements_met": true, "status": o.status}]}})
}

fn settle(st: &mut TelnyxState, i: usize) {
    let o = &mut st.orders[i];
    if o.status != "pending" {
        return;
    }
    if o.polls_left > 0 {
        o.polls_left -= 1;
        return;
    }
    o.status = if o.outcome_success { "success" } else { "failure" }.into();
    if o.outcome_success {
        let (acct, phone, conn) = (o.account.clone(), o.phone_number.clone(), o.connection_id.clone());
        st.next_id += 1;
        let id = st.next_id.to_string();
        st.accounts.get_mut(&acct).unwrap().push(TxNumber {
            id,
            phone_number: phone,
            connection_id: conn,
        });
    }
}

async fn telnyx_handler(
    State(state): State<Arc<Mutex<TelnyxState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut st = state.lock().unwrap();
    let Some(key) = key.filter(|k| st.accounts.contains_key(k)) else {
        return tx_error(401, "10009", "Authentication failed", "The API key is invalid");
    };
    let path = uri.path().to_owned();
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let q = query(&uri);
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["v2", "available_phone_numbers"]) => {
            let Some(country) = get(&q, "filter[country_code]") else {
                return tx_error(400, "10015", "Bad Request", "filter[country_code] is required");
            };
            let limit: usize = get(&q, "filter[limit]").and_then(|l| l.parse().ok()).unwrap_or(50);
            let ndc = get(&q, "filter[national_destination_code]");
            // Only the documented spellings filter; others are ignored as unknown parameters.
            let feature = get(&q, "filter[features]");
            let ptype = get(&q, "filter[phone_number_type]");
            let data: Vec<Value> = st
                .available
                .iter()
                .filter(|(n, t, f)| {
                    country == "US"
                        && ndc.is_none_or(|a| n.starts_with(&format!("+1{a}")))
                        && feature.is_none_or(|w| f.contains(&w))
                        && ptype.is_none_or(|w| *t == w)
                })
                .take(limit)
                .map(|(n, _, f)| {
                    json!({"record_type": "available_phone_number", "phone_number": n,
                    "region_information": [{"region_type": "country_code", "region_name": "US"}],
                    "cost_information": {"upfront_cost": "1.00", "monthly_cost": "1.00", "currency": "USD"},
                    "features": f.iter().map(|x| json!({"name": x})).collect::<Vec<_>>()})
                })
                .collect();
            json_resp(200, json!({"data": data, "meta": {"total_results": data.len()}}))
        }
        ("POST", ["v2", "number_orders"]) => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return tx_error(400, "10015", "Bad Request", "invalid JSON");
            };
            let Some(phone) = v["phone_numbers"][0]["phone_number"].as_str().map(str::to_owned) else {
                return tx_error(422, "10015", "Invalid parameter", "phone_numbers is required");
            };
            let Some(pos) = st.available.iter().position(|(n, _, _)| *n == phone) else {
                return tx_error(
                    422,
                    "85001",
                    "Number not available",
                    "The requested phone number is not available",
                );
            };
            st.available.remove(pos);
            st.next_id += 1;
            let o = TxOrder {
                id: format!("{:08x}-0000-4000-8000-{:012x}", st.next_id, st.next_id),
                account: key,
                outcome_success: !st.failing.contains(&phone),
                phone_number: phone,
                connection_id: v["connection_id"].as_str().map(str::to_owned),
                polls_left: st.order_polls,
                status: "pending".into(),
            };
            st.orders.push(o);
            let i = st.orders.len() - 1;
            settle(&mut st, i);
            json_resp(200, order_json(&st.orders[i]))
        }
        ("GET", ["v2", "number_orders", id]) => {
            let Some(i) = st.orders.iter().position(|o| o.id == *id && o.account == key) else {
                return tx_error(
                    404,
                    "10005",
                    "Resource not found",
                    "The requested resource was not found",
                );
            };
            settle(&mut st, i);
            json_resp(200, order_json(&st.orders[i]))
        }
        ("GET", ["v2", "phone_numbers"]) => {
            // Documented rule: digits only; a non-numerical character (a `+`) matches nothing.
            let filter = get(&q, "filter[phone_number]");
            let list: Vec<Value> = st.accounts[&key]
                .iter()
                .filter(|n| match filter {
                    None => true,
                    Some(f) if f.bytes().all(|b| b.is_ascii_digit()) => n.phone_number.trim_start_matches('+').contains(f),
                    Some(_) => false,
                })
                .map(|n| json!({"id": n.id, "record_type": "phone_number", "phone_number": n.phone_number, "status": "active", "connection_id": n.connection_id}))
                .collect();
            json_resp(
                200,
                json!({"data": list, "meta": {"total_results": list.len(), "page_number": 1, "page_size": 20}}),
            )
        }
        ("DELETE", ["v2", "phone_numbers", id]) => {
            let nums = st.accounts.get_mut(&key).unwrap();
            match nums.iter().position(|n| n.id == *id) {
                Some(i) => {
                    let n = nums.remove(i);
                    st.deletes += 1;
                    json_resp(
                        200,
                        json!({"data": {"id": n.id, "phone_number": n.phone_number, "status": "deleted"}}),
                    )
                }
                None => tx_error(
                    404,
                    "10005",
                    "Resource not found",
                    "The requested resource was not found",
                ),
            }
        }
        ("GET", ["v2", "connections", id]) => match st.connections.get(*id) {
            Some(c) => json_resp(
                200,
                json!({"data": {"id": c.id, "record_type": c.record_type, "connection_name": "c", "user_name": c.user_name, "active": true}}),
            ),
            None => tx_error(
                404,
                "10005",
                "Resource not found",
                "The requested resource was not found",
            ),
        },
        ("GET", ["v2", "fqdns"]) => {
            let conn = get(&q, "filter[connection_id]");
            let data: Vec<Value> = st
                .connections
                .values()
                .filter(|c| conn.is_none_or(|w| c.id == w))
                .flat_map(|c| c.fqdns.iter().map(move |(h, p)| json!({"id": "1", "connection_id": c.id, "fqdn": h, "port": p, "record_type": "fqdn"})))
                .collect();
            json_resp(200, json!({"data": data}))
        }
        _ => tx_error(
            404,
            "10005",
            "Resource not found",
            "The requested resource was not found",
        ),
    }
}
