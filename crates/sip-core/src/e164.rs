//! E.164 normalisation of dialled numbers, tel: URIs and user parts to `+<digits>`.

/// Why a number could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    #[error("empty number")]
    Empty,
    #[error("invalid character {0:?} in number")]
    InvalidCharacter(char),
    #[error("invalid default country code")]
    InvalidCountryCode,
    #[error("phone-context must be a global number prefix")]
    UnsupportedPhoneContext,
    #[error("E.164 numbers have 8 to 15 digits, got {0}")]
    InvalidLength(usize),
    #[error("E.164 numbers cannot start with 0")]
    LeadingZero,
    #[error("expected '+' and the number's digits")]
    NotGlobal,
    #[error("a +1 (North American) number has 10 digits after +1, got {0}")]
    NanpLength(usize),
    #[error("not a North American number: its area code and exchange must not start with 0 or 1")]
    NotNanp,
}

/// The rule every E.164 number obeys: 8 to 15 digits, the first not 0 (`digits` without the `+`).
fn check_digits(digits: &str) -> Result<(), E164Error> {
    if !(8..=15).contains(&digits.len()) {
        return Err(E164Error::InvalidLength(digits.len()));
    }
    if digits.starts_with('0') {
        return Err(E164Error::LeadingZero);
    }
    Ok(())
}

/// Checks a number already written in E.164 (`+14155550100`: no separators, no `tel:`), as customers
/// give it to the API: [`normalize`]'s rule, and a `+1` number must be a North American one (10 digits
/// after `+1`; area code and exchange start with 2-9, except in area code 555, which documents use
/// for examples).
pub fn check(v: &str) -> Result<(), E164Error> {
    let digits = v.strip_prefix('+').ok_or(E164Error::NotGlobal)?;
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(E164Error::InvalidCharacter(c));
    }
    check_digits(digits)?;
    if let Some(national) = digits.strip_prefix('1') {
        let b = national.as_bytes();
        if b.len() != 10 {
            return Err(E164Error::NanpLength(b.len()));
        }
        let example = &b[..3] == b"555";
        if matches!(b[0], b'0' | b'1') || (!example && matches!(b[3], b'0' | b'1')) {
            return Err(E164Error::NotNanp);
        }
    }
    Ok(())
}

/// A default country code as operators write it (`1`, `+44`): 1 to 3 digits, the first not 0.
/// Returned without the `+`.
pub fn country_code(cc: &str) -> Result<&str, E164Error> {
    let cc = cc.trim().trim_start_matches('+');
    if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) || cc.starts_with('0') {
        return Err(E164Error::InvalidCountryCode);
    }
    Ok(cc)
}

/// Normalises to `+<digits>` (8-15 digits, first digit non-zero).
///
/// Accepts `+14155550100`, `+1 (415) 555-0100`, `tel:+1-415-555-0100`,
/// `tel:555-0100;phone-context=+1-415` and, without `+`, either a full international number
/// or (with `default_country_code`) a national one: for country code 1 a 10-digit number
/// gets the code and an 11-digit number starting with 1 is kept; elsewhere a leading trunk
/// `0` is replaced by the country code.
pub fn normalize(input: &str, default_country_code: Option<&str>) -> Result<String, E164Error> {
    let s = input.trim();
    let s = match s.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tel:") => &s[4..],
        _ => s,
    };
    let (number, params) = s.split_once(';').unwrap_or((s, ""));
    let phone_context = params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("phone-context").then_some(v.trim())
    });
    let number = number.trim();
    if number.is_empty() {
        return Err(E164Error::Empty);
    }
    let (global, body) = match number.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let mut digits = collect_digits(body)?;
    if digits.is_empty() {
        return Err(E164Error::Empty);
    }
    if !global {
        if let Some(ctx) = phone_context {
            let prefix = ctx.strip_prefix('+').ok_or(E164Error::UnsupportedPhoneContext)?;
            let prefix = collect_digits(prefix).map_err(|_| E164Error::UnsupportedPhoneContext)?;
            if prefix.is_empty() {
                return Err(E164Error::UnsupportedPhoneContext);
            }
            digits.insert_str(0, &prefix);
        } else if let Some(cc) = default_country_code {
            let cc = country_code(cc)?;
            if cc == "1" {
                match digits.len() {
                    10 => digits.insert(0, '1'),
                    11 if digits.starts_with('1') => {}
                    n => return Err(E164Error::InvalidLength(n)),
                }
            } else if let Some(national) = digits.strip_prefix('0') {
                digits = format!("{cc}{national}");
            } else if !digits.starts_with(cc) {
                digits.insert_str(0, cc);
            }
        }
    }
    check_digits(&digits)?;
    digits.insert(0, '+');
    Ok(digits)
}

/// Digits with RFC 3966 visual separators (`-` `.` `(` `)`) and spaces removed.
fn collect_digits(s: &str) -> Result<String, E164Error> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | '(' | ')' | ' ' | '\t' => {}
            c => return Err(E164Error::InvalidCharacter(c)),
        }
        if out.len() > 32 {
            return Err(E164Error::InvalidLength(out.len()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_what_carriers_and_agents_write() {
        assert_eq!(normalize("+1 (415) 555-0100", None).unwrap(), "+14155550100");
        assert_eq!(
            normalize("tel:555-0100;phone-context=+1-415", None).unwrap(),
            "+14155550100"
        );
        assert_eq!(normalize("4155550100", Some("+1")).unwrap(), "+14155550100");
        assert_eq!(normalize("020 7183 8750", Some("44")).unwrap(), "+442071838750");
        assert_eq!(normalize("", None), Err(E164Error::Empty));
        assert_eq!(normalize("+1234567", None), Err(E164Error::InvalidLength(7)));
        assert_eq!(normalize("+0123456789", None), Err(E164Error::LeadingZero));
        assert_eq!(normalize("41a", None), Err(E164Error::InvalidCharacter('a')));
        assert_eq!(normalize("4155550100", Some("0")), Err(E164Error::InvalidCountryCode));
    }

    #[test]
    fn check_takes_written_e164_only() {
        for good in [
            "+14155551234",
            "+44123456",
            "+15005550006",
            "+442071838750",
            "+15551234567",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("14155551234", E164Error::NotGlobal),
            ("", E164Error::NotGlobal),
            ("+0123456789", E164Error::LeadingZero),
            ("+1234567", E164Error::InvalidLength(7)),
            ("+1234567890123456", E164Error::InvalidLength(16)),
            ("+1415a551234", E164Error::InvalidCharacter('a')),
            ("+1 415 555 1234", E164Error::InvalidCharacter(' ')),
            ("+12345678", E164Error::NanpLength(7)),
            ("+1415555010", E164Error::NanpLength(9)),
            ("+141555501000", E164Error::NanpLength(11)),
            ("+10115550100", E164Error::NotNanp),
            ("+11155550100", E164Error::NotNanp),
            ("+14150550100", E164Error::NotNanp),
            ("+14151550100", E164Error::NotNanp),
        ] {
            assert_eq!(check(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn country_codes() {
        assert_eq!(country_code(" +44 "), Ok("44"));
        assert_eq!(country_code("1"), Ok("1"));
        for bad in ["", "+", "0", "012", "1234", "4a"] {
            assert_eq!(country_code(bad), Err(E164Error::InvalidCountryCode), "{bad}");
        }
    }
}
