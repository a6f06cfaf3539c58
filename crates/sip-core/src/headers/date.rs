//! RFC 1123 date check for the Date header (RFC 3261 20.17: the zone must be "GMT").

/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`
pub(crate) fn is_valid_rfc1123(s: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    if b.len() != 29 || !s.is_ascii() {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    DAYS.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert!(super::is_valid_rfc1123("Sat, 15 Oct 2005 04:44:56 GMT"));
        assert!(!super::is_valid_rfc1123("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(!super::is_valid_rfc1123("Fri, 01 Jan 2010 16:00:00 GMTX"));
        assert!(!super::is_valid_rfc1123("Fri, 01 Jan 2010 16:00:0é GMT"));
    }
}
