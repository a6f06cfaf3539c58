//! Offline inventory: operator-declared number ranges plus the fictional NANP 555-01XX block,
//! so the edge can hand out numbers with no carrier account (development, lab, demos).

use serde::{Deserialize, Serialize};

use crate::validate::{
    is_e164, is_nanp_country, nanp_area_code, nanp_friendly_name, validate_area_code, validate_country, validate_e164,
    validate_query, wanted,
};
use crate::{AvailableNumber, BoxFuture, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery};

/// Upper bound on candidate numbers one search looks at, so a `contains` pattern that matches
/// nothing in a 10^9-number range costs milliseconds, not minutes.
pub const MAX_SCAN_PER_SEARCH: u64 = 200_000;

/// First and last line numbers of the fictional block (`555-0100`..`555-0199`).
const FICTIONAL_FIRST: u64 = 5_550_100;
const FICTIONAL_LAST: u64 = 5_550_199;

/// A block of numbers the operator owns, as declared in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InventoryRange {
    /// ISO 3166 alpha-2, upper case.
    pub country: String,
    pub area_code: String,
    /// First number, E.164.
    pub first: String,
    /// Last number (inclusive), E.164, same length as `first`.
    pub last: String,
}

/// A validated range: numbers as integers so iteration allocates one string per result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    country: String,
    area_code: String,
    first: u64,
    last: u64,
}

impl Range {
    fn contains(&self, n: u64) -> bool {
        // E.164 has no leading zero, so equal digit counts are implied by first <= n <= last.
        (self.first..=self.last).contains(&n)
    }
}

/// The embedded default provider. Purchases always succeed for inventory numbers; never
/// selling one twice is enforced by the caller through `SearchQuery::exclude`.
#[derive(Debug, Clone, Default)]
pub struct LocalInventory {
    ranges: Vec<Range>,
}

impl LocalInventory {
    /// Builds the inventory, dropping (and logging) invalid ranges so a bad config line
    /// cannot stop the edge. Use [`LocalInventory::try_new`] to reject the config instead.
    pub fn new(ranges: Vec<InventoryRange>) -> Self {
        let ranges = ranges
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match parse_range(i, r) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring invalid inventory range");
                    None
                }
            })
            .collect();
        Self { ranges }
    }

    /// Builds the inventory or names the first invalid field (`ranges[2].last`).
    pub fn try_new(ranges: Vec<InventoryRange>) -> Result<Self, ProviderError> {
        let ranges = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| parse_range(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ranges })
    }

    fn search_sync(&self, q: &SearchQuery) -> Result<Vec<AvailableNumber>, ProviderError> {
        validate_query(q)?;
        let declared: Vec<&Range> = self
            .ranges
            .iter()
            .filter(|r| r.country == q.country)
            .filter(|r| q.area_code.as_deref().is_none_or(|ac| r.area_code == ac))
            .collect();
        let mut scan = Scan {
            q,
            budget: MAX_SCAN_PER_SEARCH,
            out: Vec::new(),
        };
        if !declared.is_empty() {
            for r in declared {
                if !scan.run(r.first, r.last, &r.area_code) {
                    break;
                }
            }
        } else if let Some(ac) = q.area_code.as_deref().filter(|_| is_nanp_country(&q.country)) {
            if let Some((first, last)) = fictional_block(ac) {
                scan.run(first, last, ac);
            }
        }
        Ok(scan.out)
    }

    fn purchase_sync(&self, phone_number: &str) -> Result<PurchasedNumber, ProviderError> {
        validate_e164("phone_number", phone_number)?;
        if self.in_inventory(phone_number) {
            Ok(PurchasedNumber {
                phone_number: phone_number.to_owned(),
                provider: ProviderKind::Local,
                provider_ref: format!("local:{phone_number}"),
            })
        } else {
            Err(ProviderError::NotAvailable(phone_number.to_owned()))
        }
    }

    fn in_inventory(&self, e164: &str) -> bool {
        let Some(n) = e164.get(1..).and_then(|d| d.parse::<u64>().ok()) else {
            return false;
        };
        if self.ranges.iter().any(|r| r.contains(n)) {
            return true;
        }
        // The fictional block of an area code is inventory wherever search would offer it:
        // for a NANP country with no declared range for that area code.
        let Some(ac) = nanp_area_code(e164) else {
            return false;
        };
        let Some((first, last)) = fictional_block(ac) else {
            return false;
        };
        (first..=last).contains(&n)
            && ["US", "CA"]
                .iter()
                .any(|c| !self.ranges.iter().any(|r| r.country == *c && r.area_code == ac))
    }
}

/// Accumulates results over ranges under a shared scan budget.
struct Scan<'q> {
    q: &'q SearchQuery,
    budget: u64,
    out: Vec<AvailableNumber>,
}

impl Scan<'_> {
    /// Scans `first..=last` lazily; returns false once the limit or budget is exhausted.
    fn run(&mut self, first: u64, last: u64, area_code: &str) -> bool {
        for n in first..=last {
            if self.out.len() >= self.q.limit || self.budget == 0 {
                return false;
            }
            self.budget -= 1;
            let e164 = format!("+{n}");
            if wanted(self.q, &e164) {
                self.out.push(AvailableNumber {
                    friendly_name: nanp_friendly_name(&e164),
                    phone_number: e164,
                    country: self.q.country.clone(),
                    region: None,
                    locality: None,
                    area_code: Some(area_code.to_owned()),
                    capabilities: vec!["voice".to_owned()],
                    monthly_cost: None,
                });
            }
        }
        self.out.len() < self.q.limit && self.budget > 0
    }
}

/// `+1 NPA 555-0100` .. `+1 NPA 555-0199` as integers, for a valid NANP area code.
fn fictional_block(area_code: &str) -> Option<(u64, u64)> {
    validate_area_code("US", area_code).ok()?;
    let npa: u64 = area_code.parse().ok()?;
    let base = 10_000_000_000 + npa * 10_000_000;
    Some((base + FICTIONAL_FIRST, base + FICTIONAL_LAST))
}

fn parse_range(i: usize, r: &InventoryRange) -> Result<Range, ProviderError> {
    let field = |name: &str| format!("ranges[{i}].{name}");
    let relabel = |name: &str, e: ProviderError| match e {
        ProviderError::InvalidRequest { message, .. } => ProviderError::invalid(field(name), message),
        other => other,
    };
    validate_country(&r.country).map_err(|e| relabel("country", e))?;
    validate_area_code(&r.country, &r.area_code).map_err(|e| relabel("area_code", e))?;
    let number = |name: &str, s: &str| -> Result<u64, ProviderError> {
        if !is_e164(s) {
            return Err(ProviderError::invalid(field(name), "must be E.164"));
        }
        if is_nanp_country(&r.country) && nanp_area_code(s) != Some(r.area_code.as_str()) {
            return Err(ProviderError::invalid(
                field(name),
                format!("must be a +1 {} number", r.area_code),
            ));
        }
        s.get(1..)
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| ProviderError::invalid(field(name), "must be E.164"))
    };
    let first = number("first", &r.first)?;
    let last = number("last", &r.last)?;
    if r.first.len() != r.last.len() || first > last {
        return Err(ProviderError::invalid(
            field("last"),
            "must have as many digits as `first` and not be below it",
        ));
    }
    Ok(Range {
        country: r.country.clone(),
        area_code: r.area_code.clone(),
        first,
        last,
    })
}

impl NumberProvider for LocalInventory {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    fn search<'a>(&'a self, q: &'a SearchQuery) -> BoxFuture<'a, Result<Vec<AvailableNumber>, ProviderError>> {
        Box::pin(async move { self.search_sync(q) })
    }

    fn purchase<'a>(&'a self, phone_number: &'a str) -> BoxFuture<'a, Result<PurchasedNumber, ProviderError>> {
        Box::pin(async move { self.purchase_sync(phone_number) })
    }

    fn release<'a>(&'a self, purchased: &'a PurchasedNumber) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            if purchased.provider != ProviderKind::Local {
                return Err(ProviderError::invalid(
                    "provider",
                    format!("{} number cannot be released to local", purchased.provider),
                ));
            }
            Ok(())
        })
    }

    /// The operator owns its whole inventory and the store keeps one record per number, so an
    /// inventory number is held; anything else never was.
    fn find_owned<'a>(
        &'a self,
        phone_number: &'a str,
    ) -> BoxFuture<'a, Result<Option<PurchasedNumber>, ProviderError>> {
        Box::pin(async move {
            validate_e164("phone_number", phone_number)?;
            Ok(self.in_inventory(phone_number).then(|| PurchasedNumber {
                phone_number: phone_number.to_owned(),
                provider: ProviderKind::Local,
                provider_ref: format!("local:{phone_number}"),
            }))
        })
    }
}
