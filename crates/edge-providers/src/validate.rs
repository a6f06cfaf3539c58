//! Input checks shared by every provider, so a bad query fails the same way everywhere and
//! before any upstream call.

use crate::{ProviderError, SearchQuery};

/// Largest `SearchQuery::limit` accepted (a results page, not a bulk export).
pub const MAX_SEARCH_LIMIT: usize = 100;

/// Longest `contains` pattern: an E.164 number has at most 15 digits.
const MAX_CONTAINS_DIGITS: usize = 15;

/// ISO countries that use the North American Numbering Plan rules and the fictional
/// 555-01XX block.
const NANP_COUNTRIES: [&str; 2] = ["US", "CA"];

pub(crate) fn is_nanp_country(country: &str) -> bool {
    NANP_COUNTRIES.contains(&country)
}

/// The area code of a NANP E.164 number (`+14155550100` -> `415`).
pub(crate) fn nanp_area_code(e164: &str) -> Option<&str> {
    let digits = e164.strip_prefix("+1")?;
    if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.get(..3)
    } else {
        None
    }
}

/// `(415) 555-0100` for NANP numbers, `None` otherwise.
pub(crate) fn nanp_friendly_name(e164: &str) -> Option<String> {
    nanp_area_code(e164)?;
    let d = e164.get(2..)?;
    Some(format!("({}) {}-{}", d.get(..3)?, d.get(3..6)?, d.get(6..)?))
}

/// Checks every field of a query; bad input is rejected (never silently rewritten) and
/// the error names the field.
pub(crate) fn validate_query(q: &SearchQuery) -> Result<(), ProviderError> {
    validate_country(&q.country)?;
    if let Some(ac) = &q.area_code {
        validate_area_code(&q.country, ac)?;
    }
    if let Some(c) = &q.contains {
        validate_contains(c)?;
    }
    validate_limit(q.limit)
}

pub(crate) fn validate_country(country: &str) -> Result<(), ProviderError> {
    if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ProviderError::invalid(
            "country",
            "must be an ISO 3166 alpha-2 code in upper case (e.g. US)",
        ))
    }
}

/// NANP area codes are `NXX` with N in 2-9, excluding `N11` service codes and the reserved
/// `N9X` expansion codes. Other countries: 1 to 6 digits.
pub(crate) fn validate_area_code(country: &str, area_code: &str) -> Result<(), ProviderError> {
    let b = area_code.as_bytes();
    if !b.iter().all(u8::is_ascii_digit) || b.is_empty() {
        return Err(ProviderError::invalid("area_code", "must contain digits only"));
    }
    if is_nanp_country(country) {
        if b.len() != 3 {
            return Err(ProviderError::invalid("area_code", "must be 3 digits"));
        }
        if b[0] < b'2' {
            return Err(ProviderError::invalid("area_code", "must not start with 0 or 1 (NANP)"));
        }
        if b[1] == b'1' && b[2] == b'1' {
            return Err(ProviderError::invalid(
                "area_code",
                "N11 codes are service codes, not area codes",
            ));
        }
        if b[1] == b'9' {
            return Err(ProviderError::invalid("area_code", "N9X codes are reserved (NANP)"));
        }
    } else if b.len() > 6 {
        return Err(ProviderError::invalid("area_code", "must be 1 to 6 digits"));
    }
    Ok(())
}

pub(crate) fn validate_contains(contains: &str) -> Result<(), ProviderError> {
    let ok =
        !contains.is_empty() && contains.len() <= MAX_CONTAINS_DIGITS && contains.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ProviderError::invalid(
            "contains",
            format!("must be 1 to {MAX_CONTAINS_DIGITS} digits"),
        ))
    }
}

pub(crate) fn validate_limit(limit: usize) -> Result<(), ProviderError> {
    if (1..=MAX_SEARCH_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(ProviderError::invalid(
            "limit",
            format!("must be between 1 and {MAX_SEARCH_LIMIT}"),
        ))
    }
}

/// `+` then 2..=15 digits, the first not 0.
pub(crate) fn is_e164(number: &str) -> bool {
    match number.strip_prefix('+') {
        Some(d) => (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'),
        None => false,
    }
}

pub(crate) fn validate_e164(field: &str, number: &str) -> Result<(), ProviderError> {
    if is_e164(number) {
        Ok(())
    } else {
        Err(ProviderError::invalid(
            field,
            "must be an E.164 number (+ then up to 15 digits)",
        ))
    }
}

/// Whether a result passes the query's `contains` and `exclude` filters. Providers filter
/// upstream too; this makes the contract hold whatever the upstream does.
pub(crate) fn wanted(q: &SearchQuery, e164: &str) -> bool {
    if q.exclude.contains(e164) {
        return false;
    }
    match &q.contains {
        Some(c) => e164.contains(c.as_str()),
        None => true,
    }
}

/// Cuts provider-supplied text to a size safe to store and echo back to API clients.
pub(crate) fn bounded_text(text: &str) -> String {
    const MAX_CHARS: usize = 512;
    text.chars().filter(|c| !c.is_control()).take(MAX_CHARS).collect()
}
