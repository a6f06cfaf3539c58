//! The `sdp-types` based SDP rewrite that `edge_media::rewrite_sdp` replaced, kept verbatim as the
//! test oracle (tests/sdp_oracle.rs) and as the "old" side of benches/sdp.rs. Not product code.
#![allow(dead_code)]

use std::net::IpAddr;

use bytes::Bytes;
use edge_media::{Codec, G711Law, RemoteMedia, SdpError, VoicemailMedia};
use sdp_types::{Attribute, Connection, Media, Origin, RtpMap, Session};

/// Names of the static audio payload types (RFC 3551) seen on trunks.
fn static_codec(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

fn is_telephone_event(name: &str) -> bool {
    name.eq_ignore_ascii_case("telephone-event")
}

fn codecs_of(media: &Media) -> Vec<Codec> {
    let maps: Vec<RtpMap> = media.attributes_typed::<RtpMap>().flatten().collect();
    media
        .fmt
        .split_ascii_whitespace()
        .filter_map(|f| f.parse::<u8>().ok())
        .map(|pt| {
            let (name, clock_rate) = match maps.iter().find(|m| m.payload_type == pt) {
                Some(m) => (m.encoding_name.clone(), m.clock_rate),
                None => static_codec(pt).map_or(("unknown".to_owned(), 8000), |(n, r)| (n.to_owned(), r)),
            };
            Codec {
                payload_type: pt,
                name,
                clock_rate,
            }
        })
        .collect()
}

/// Payload type an `rtpmap`/`fmtp`/`rtcp-fb` attribute refers to.
fn attribute_pt(attr: &Attribute) -> Option<u8> {
    let name = attr.attribute.to_ascii_lowercase();
    if !matches!(name.as_str(), "rtpmap" | "fmtp" | "rtcp-fb") {
        return None;
    }
    attr.value.as_deref()?.split_ascii_whitespace().next()?.parse().ok()
}

fn parse(sdp: &[u8]) -> Result<Session, SdpError> {
    Session::parse(sdp).map_err(|e| SdpError::Parse(e.to_string()))
}

fn serialize(session: &Session) -> Bytes {
    let mut out = Vec::with_capacity(512);
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    Bytes::from(out)
}

fn is_rtp(proto: &str) -> bool {
    proto.len() >= 4 && proto[..4].eq_ignore_ascii_case("RTP/")
}

/// Picks the audio stream to anchor: the first active RTP audio `m=`.
fn audio_index(session: &Session) -> Result<usize, SdpError> {
    let mut unsupported = None;
    for (i, m) in session.medias.iter().enumerate() {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        if is_rtp(&m.proto) {
            return Ok(i);
        }
        unsupported.get_or_insert_with(|| m.proto.clone());
    }
    Err(unsupported.map_or(SdpError::NoAudio, SdpError::UnsupportedTransport))
}

fn remote_of(session: &Session, media: &Media) -> Result<RemoteMedia, SdpError> {
    let conn = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or(SdpError::NoConnectionAddress)?;
    let addr = conn.try_address().map_err(|_| SdpError::NoConnectionAddress)?.ip;
    let rtcp_port = media
        .get_first_attribute_typed::<sdp_types::Rtcp>()
        .and_then(Result::ok)
        .map(|r| r.port)
        .unwrap_or_else(|| media.port.saturating_add(1));
    let codecs = codecs_of(media);
    Ok(RemoteMedia {
        addr,
        rtp_port: media.port,
        rtcp_port,
        payload_types: codecs.iter().map(|c| c.payload_type).collect(),
        telephone_event_pt: codecs
            .iter()
            .find(|c| is_telephone_event(&c.name))
            .map(|c| c.payload_type),
        codecs,
    })
}

fn addr_type(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// Attributes that would leak the peer's addresses past the anchor.
fn leaks_addresses(attr: &Attribute) -> bool {
    let a = attr.attribute.to_ascii_lowercase();
    matches!(
        a.as_str(),
        "candidate" | "remote-candidates" | "end-of-candidates" | "ice-ufrag" | "ice-pwd"
    )
}

/// Rewrites `sdp` so all audio flows through `addr:port` (our relay side facing
/// the receiver of this SDP) and returns what the sender declared.
///
/// * `c=` (session and media level) and `o=` address become `addr`; the `o=`
///   session id and version are kept, so the sender's version increments on
///   re-offers carry through and an unchanged re-offer stays identical.
/// * The first active RTP audio `m=` gets `port` (and `a=rtcp` → `port + 1`);
///   other streams are disabled (port 0) since the edge relays audio only.
/// * Codecs pass through unless `allowed_codecs` (encoding names, any case) is
///   given; then others are removed with their rtpmap/fmtp/rtcp-fb lines.
///   telephone-event is always kept. Nothing left → [`SdpError::NoCommonCodec`].
pub fn rewrite_sdp(
    sdp: &[u8],
    addr: IpAddr,
    port: u16,
    allowed_codecs: Option<&[String]>,
) -> Result<(Bytes, RemoteMedia), SdpError> {
    let mut session = parse(sdp)?;
    let index = audio_index(&session)?;
    let mut remote = remote_of(&session, &session.medias[index])?;

    if let Some(allowed) = allowed_codecs {
        let keep: Vec<&Codec> = remote
            .codecs
            .iter()
            .filter(|c| is_telephone_event(&c.name) || allowed.iter().any(|a| a.eq_ignore_ascii_case(&c.name)))
            .collect();
        if keep.iter().all(|c| is_telephone_event(&c.name)) {
            return Err(SdpError::NoCommonCodec);
        }
        let kept: Vec<u8> = keep.iter().map(|c| c.payload_type).collect();
        let media = &mut session.medias[index];
        media.fmt = kept.iter().map(u8::to_string).collect::<Vec<_>>().join(" ");
        media
            .attributes
            .retain(|a| attribute_pt(a).is_none_or(|pt| kept.contains(&pt)));
        remote.codecs.retain(|c| kept.contains(&c.payload_type));
        remote.payload_types = kept;
    } else if !remote.codecs.iter().any(|c| !is_telephone_event(&c.name)) {
        return Err(SdpError::NoCommonCodec);
    }

    session.origin.set_unicast_ip_address(addr);
    if session.connection.is_some() {
        session.connection = Some(Connection::from_ip_addr(addr));
    }
    session.attributes.retain(|a| !leaks_addresses(a));
    let rtcp_value = format!("{} IN {} {}", port.saturating_add(1), addr_type(addr), addr);
    for (i, media) in session.medias.iter_mut().enumerate() {
        if !media.connections.is_empty() {
            media.connections = vec![Connection::from_ip_addr(addr)];
        }
        media.attributes.retain(|a| !leaks_addresses(a));
        if i != index {
            media.port = 0;
            media.num_ports = None;
            continue;
        }
        media.port = port;
        media.num_ports = None;
        for attr in &mut media.attributes {
            if attr.attribute.eq_ignore_ascii_case("rtcp") {
                attr.value = Some(rtcp_value.clone());
            }
        }
    }
    Ok((serialize(&session), remote))
}

/// Builds the edge's own SDP answer for voicemail: the caller's first offered
/// G.711 codec (PCMU or PCMA) plus telephone-event if offered; every other
/// `m=` line is rejected with port 0 as RFC 3264 requires.
pub fn build_voicemail_answer_sdp(local: IpAddr, port: u16, offer: &[u8]) -> Result<(Bytes, VoicemailMedia), SdpError> {
    let offer = parse(offer)?;
    let index = audio_index(&offer)?;
    let remote = remote_of(&offer, &offer.medias[index])?;
    let (law, payload_type) = remote
        .codecs
        .iter()
        .find_map(|c| {
            let law = if c.name.eq_ignore_ascii_case("PCMU") {
                G711Law::Ulaw
            } else if c.name.eq_ignore_ascii_case("PCMA") {
                G711Law::Alaw
            } else {
                return None;
            };
            (c.clock_rate == 8000).then_some((law, c.payload_type))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = remote
        .codecs
        .iter()
        .find(|c| is_telephone_event(&c.name) && c.clock_rate == 8000)
        .map(|c| c.payload_type);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut answer = Session::new(Origin::with_ip_addr(now, now, local), "-");
    answer.set_connection(Connection::from_ip_addr(local));
    answer.add_time(sdp_types::Time::new(0, 0));
    for (i, offered) in offer.medias.iter().enumerate() {
        let mut media = Media {
            media: offered.media.clone(),
            port: 0,
            num_ports: None,
            proto: offered.proto.clone(),
            fmt: offered.fmt.clone(),
            media_title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        };
        if i == index {
            media.port = port;
            media.fmt = payload_type.to_string();
            media.add_attribute_with_value("rtpmap", format!("{payload_type} {}/8000", law.encoding_name()));
            if let Some(te) = telephone_event_pt {
                media.fmt = format!("{payload_type} {te}");
                media.add_attribute_with_value("rtpmap", format!("{te} telephone-event/8000"));
                media.add_attribute_with_value("fmtp", format!("{te} 0-16"));
            }
            media.add_attribute_with_value("ptime", "20");
            media.add_attribute_from_str("sendrecv");
        }
        answer.add_media(media);
    }
    Ok((
        serialize(&answer),
        VoicemailMedia {
            law,
            payload_type,
            telephone_event_pt,
            remote,
        },
    ))
}
