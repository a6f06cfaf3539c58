//! SDP rewriting on carrier-style offers.

use std::net::{IpAddr, Ipv4Addr};

use edge_media::{build_voicemail_answer_sdp, rewrite_sdp, G711Law, SdpError};
use sdp_types::Session;

#[path = "support/carrier_sdp.rs"]
mod carrier_sdp;
use carrier_sdp::{EDGE, TWILIO};

// Media-level c=, a=rtcp with address, G.729 with fmtp, a disabled video line; LF endings.
const TELNYX: &str = "v=0
o=- 1700000000 1700000002 IN IP4 192.76.120.10
s=Telnyx
t=0 0
m=audio 31466 RTP/AVP 9 0 8 18 101
c=IN IP4 192.76.120.10
a=rtcp:31467 IN IP4 192.76.120.10
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 96
";

fn text(b: &bytes::Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn twilio_offer_anchored_on_edge() {
    let (out, remote) = rewrite_sdp(TWILIO.as_bytes(), EDGE, 30000, None).unwrap();
    assert_eq!(remote.addr, IpAddr::V4(Ipv4Addr::new(54, 172, 60, 1)));
    assert_eq!((remote.rtp_port, remote.rtcp_port), (18642, 18643));
    assert_eq!(remote.payload_types, vec![0, 8, 101]);
    assert_eq!(remote.telephone_event_pt, Some(101));
    let s = text(&out);
    assert!(!s.contains("54.172.60.1"), "no carrier address leaks:\n{s}");
    assert!(s.contains("c=IN IP4 203.0.113.7\r\n"));
    assert!(s.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"));
    assert!(
        s.contains("o=root 1819914217 1819914217 IN IP4 203.0.113.7\r\n"),
        "o= id/version kept"
    );
    for kept in ["a=fmtp:101 0-16", "a=ptime:20", "a=maxptime:150", "a=sendrecv"] {
        assert!(s.contains(kept), "{kept} passed through");
    }
    let reparsed = Session::parse(&out).unwrap();
    assert_eq!(reparsed.medias.len(), 1);
}

#[test]
fn telnyx_offer_media_level_connection_and_rtcp() {
    let (out, remote) = rewrite_sdp(TELNYX.as_bytes(), EDGE, 30002, None).unwrap();
    assert_eq!(remote.addr, IpAddr::V4(Ipv4Addr::new(192, 76, 120, 10)));
    assert_eq!((remote.rtp_port, remote.rtcp_port), (31466, 31467));
    assert_eq!(remote.payload_types, vec![9, 0, 8, 18, 101]);
    assert_eq!(remote.codecs[0].name, "G722");
    let s = text(&out);
    assert!(!s.contains("192.76.120.10"), "{s}");
    assert!(s.contains("a=rtcp:30003 IN IP4 203.0.113.7"));
    assert!(s.contains("m=audio 30002 RTP/AVP 9 0 8 18 101"));
    assert!(s.contains("m=video 0 RTP/AVP 96"));
    assert!(s.contains("o=- 1700000000 1700000002 IN IP4 203.0.113.7"));
}

#[test]
fn second_active_stream_disabled_and_first_audio_used() {
    let offer = TWILIO.replace(
        "a=sendrecv\r\n",
        "a=sendrecv\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
    );
    let (out, remote) = rewrite_sdp(offer.as_bytes(), EDGE, 30000, None).unwrap();
    assert_eq!(remote.rtp_port, 18642);
    let parsed = Session::parse(&out).unwrap();
    assert_eq!(parsed.medias[0].port, 30000);
    assert_eq!(parsed.medias[1].port, 0, "video is not relayed, so it is disabled");
}

#[test]
fn codec_filter_keeps_telephone_event_and_drops_related_lines() {
    let allowed = vec!["pcmu".to_string(), "G729".to_string()];
    let (out, remote) = rewrite_sdp(TELNYX.as_bytes(), EDGE, 30002, Some(&allowed)).unwrap();
    assert_eq!(remote.payload_types, vec![0, 18, 101]);
    let s = text(&out);
    assert!(s.contains("m=audio 30002 RTP/AVP 0 18 101"));
    assert!(!s.contains("G722") && !s.contains("PCMA"));
    assert!(s.contains("a=fmtp:18 annexb=no") && s.contains("a=fmtp:101 0-16"));

    let opus_only = vec!["opus".to_string()];
    let err = rewrite_sdp(TELNYX.as_bytes(), EDGE, 30002, Some(&opus_only)).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn unusable_offers_rejected() {
    assert!(matches!(rewrite_sdp(b"hello", EDGE, 1, None), Err(SdpError::Parse(_))));
    let no_audio = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n";
    assert_eq!(
        rewrite_sdp(no_audio.as_bytes(), EDGE, 1, None).unwrap_err(),
        SdpError::NoAudio
    );
    let no_c = TWILIO.replace("c=IN IP4 54.172.60.1\r\n", "");
    assert_eq!(
        rewrite_sdp(no_c.as_bytes(), EDGE, 1, None).unwrap_err(),
        SdpError::NoConnectionAddress
    );
    let dtls = TWILIO.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
    assert!(matches!(
        rewrite_sdp(dtls.as_bytes(), EDGE, 1, None),
        Err(SdpError::UnsupportedTransport(_))
    ));
    let only_dtmf = TWILIO.replace("RTP/AVP 0 8 101", "RTP/AVP 101");
    assert_eq!(
        rewrite_sdp(only_dtmf.as_bytes(), EDGE, 1, None).unwrap_err(),
        SdpError::NoCommonCodec
    );
}

#[test]
fn ipv6_edge_address() {
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let (out, _) = rewrite_sdp(TWILIO.as_bytes(), v6, 30000, None).unwrap();
    assert!(text(&out).contains("c=IN IP6 2001:db8::7"));
}

#[test]
fn voicemail_answer_follows_offer() {
    let (answer, media) = build_voicemail_answer_sdp(EDGE, 30010, TELNYX.as_bytes()).unwrap();
    assert_eq!(
        (media.law, media.payload_type, media.telephone_event_pt),
        (G711Law::Ulaw, 0, Some(101))
    );
    let parsed = Session::parse(&answer).unwrap();
    assert_eq!(parsed.medias.len(), 2, "one answer line per offered m= line");
    assert_eq!(parsed.medias[0].port, 30010);
    assert_eq!(parsed.medias[0].fmt, "0 101");
    assert_eq!(parsed.medias[1].port, 0);
    let s = text(&answer);
    assert!(s.contains("c=IN IP4 203.0.113.7") && s.contains("a=rtpmap:101 telephone-event/8000"));

    let pcma_first = TWILIO.replace("RTP/AVP 0 8 101", "RTP/AVP 8 0");
    let (answer, media) = build_voicemail_answer_sdp(EDGE, 30010, pcma_first.as_bytes()).unwrap();
    assert_eq!((media.law, media.telephone_event_pt), (G711Law::Alaw, None));
    assert!(!text(&answer).contains("telephone-event"));

    let g722_only = TWILIO.replace("RTP/AVP 0 8 101", "RTP/AVP 9 101");
    assert_eq!(
        build_voicemail_answer_sdp(EDGE, 30010, g722_only.as_bytes()).unwrap_err(),
        SdpError::NoCommonCodec
    );
}
