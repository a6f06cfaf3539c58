//! SDP shared by the SDP test suites: what a carrier offers, and the edge's address.

use std::net::{IpAddr, Ipv4Addr};

/// The media address the edge writes into rewritten SDP.
pub const EDGE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// Twilio Elastic SIP Trunking's offer: PCMU, PCMA, telephone-event, CRLF endings.
pub const TWILIO: &str = "v=0\r\n\
o=root 1819914217 1819914217 IN IP4 54.172.60.1\r\n\
s=Twilio Media Gateway\r\n\
c=IN IP4 54.172.60.1\r\n\
t=0 0\r\n\
m=audio 18642 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";
