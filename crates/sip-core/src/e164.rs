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
            let cc = cc.trim().trim_start_matches('+');
            if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) || cc.starts_with('0') {
                return Err(E164Error::InvalidCountryCode);
            }
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
    if !(8..=15).contains(&digits.len()) {
        return Err(E164Error::InvalidLength(digits.len()));
    }
    if digits.starts_with('0') {
        return Err(E164Error::LeadingZero);
    }
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
