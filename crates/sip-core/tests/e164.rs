use sip_core::e164::{normalize, E164Error};

#[test]
fn accepted_forms() {
    for (input, cc, want) in [
        ("+14155550100", None, "+14155550100"),
        ("14155550100", None, "+14155550100"),
        ("4155550100", Some("1"), "+14155550100"),
        ("14155550100", Some("1"), "+14155550100"),
        ("+1 (415) 555-0100", None, "+14155550100"),
        ("tel:+1-415-555-0100", None, "+14155550100"),
        ("TEL:+44.20.7946.0018", None, "+442079460018"),
        ("tel:555-0100;phone-context=+1-415", None, "+14155550100"),
        ("020 7946 0018", Some("44"), "+442079460018"),
        ("7911123456", Some("+44"), "+447911123456"),
        ("  +971 50 123 4567 ", None, "+971501234567"),
    ] {
        assert_eq!(normalize(input, cc).as_deref(), Ok(want), "{input:?} {cc:?}");
    }
}

#[test]
fn refused_forms() {
    assert_eq!(normalize("", None), Err(E164Error::Empty));
    assert_eq!(normalize("+", None), Err(E164Error::Empty));
    assert_eq!(normalize("+1415abc", None), Err(E164Error::InvalidCharacter('a')));
    assert_eq!(normalize("+1234567", None), Err(E164Error::InvalidLength(7)));
    assert_eq!(normalize("+1234567890123456", None), Err(E164Error::InvalidLength(16)));
    assert_eq!(normalize("555-0100", Some("1")), Err(E164Error::InvalidLength(7)));
    assert_eq!(normalize("4155550100", Some("x1")), Err(E164Error::InvalidCountryCode));
    assert_eq!(
        normalize("tel:5550100;phone-context=example.com", None),
        Err(E164Error::UnsupportedPhoneContext)
    );
    assert_eq!(normalize("0123456789", None), Err(E164Error::LeadingZero));
    assert!(normalize(&"9".repeat(10_000), None).is_err());
}
