//! SDP offer/answer (RFC 4566, RFC 3264) for the audio subset denwa speaks:
//! G.711 µ-law/A-law at 8 kHz with 20 ms packets, plus RFC 4733 telephone-event.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The two codecs every SIP phone and provider supports.
pub use crate::codec::Codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(value: &str) -> Option<Direction> {
        match value {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What we answer to a stream offered with this direction (RFC 3264 §6.1).
    fn answered(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// May we send media on a stream with this (negotiated, our-side) direction?
    pub fn we_send(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

/// One `m=` section of a received description.
#[derive(Debug, Clone)]
struct MediaSection {
    kind: String,
    port: u16,
    proto: String,
    formats: Vec<String>,
    connection: Option<IpAddr>,
    rtpmaps: Vec<(u8, String, u32)>,
    direction: Direction,
}

/// A received session description.
#[derive(Debug, Clone)]
pub struct SessionDescription {
    connection: Option<IpAddr>,
    media: Vec<MediaSection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    Malformed(String),
    /// No audio stream we can serve: answer 488 Not Acceptable Here.
    NotAcceptable(String),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::Malformed(s) => write!(f, "malformed SDP: {s}"),
            SdpError::NotAcceptable(s) => write!(f, "SDP not acceptable: {s}"),
        }
    }
}

/// What both sides agreed on for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// Where the peer wants our RTP (until symmetric RTP learns better).
    pub remote: SocketAddr,
    /// Our side's direction.
    pub direction: Direction,
}

fn parse_ip(nettype_addr: &str) -> Result<IpAddr, SdpError> {
    // "IN IP4 1.2.3.4" (multicast "/ttl" suffixes are cut off).
    let mut it = nettype_addr.split_ascii_whitespace();
    let (net, _family, addr) = (it.next(), it.next(), it.next());
    if net != Some("IN") {
        return Err(SdpError::Malformed(format!("c= line {nettype_addr:?}")));
    }
    let addr = addr.unwrap_or_default().split('/').next().unwrap_or_default();
    addr.parse()
        .map_err(|_| SdpError::Malformed(format!("c= address {addr:?} (host names are not supported)")))
}

impl SessionDescription {
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
        let mut sd = SessionDescription {
            connection: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        // Direction attributes at session level apply to every stream that
        // has none of its own (RFC 3264 §5.1).
        let mut session_direction = Direction::SendRecv;
        let mut own_direction: Vec<bool> = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let (kind, value) = line
                .split_once('=')
                .ok_or_else(|| SdpError::Malformed(format!("line {line:?}")))?;
            match (kind, sd.media.last_mut()) {
                ("v", _) => saw_version = true,
                ("c", None) => sd.connection = Some(parse_ip(value)?),
                ("c", Some(m)) => m.connection = Some(parse_ip(value)?),
                ("m", _) => {
                    let mut it = value.split_ascii_whitespace();
                    let kind = it.next().unwrap_or_default().to_string();
                    let port = it.next().unwrap_or_default();
                    let port: u16 = port
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| SdpError::Malformed(format!("m= port {port:?}")))?;
                    let proto = it.next().unwrap_or_default().to_string();
                    let formats = it.map(str::to_string).collect();
                    own_direction.push(false);
                    sd.media.push(MediaSection {
                        kind,
                        port,
                        proto,
                        formats,
                        connection: None,
                        rtpmaps: Vec::new(),
                        direction: Direction::SendRecv,
                    });
                }
                ("a", Some(m)) => match value.split_once(':') {
                    Some(("rtpmap", map)) => {
                        let (pt, enc) = map.split_once(' ').unwrap_or((map, ""));
                        let mut enc = enc.trim().split('/');
                        if let (Ok(pt), Some(name), Some(rate)) = (pt.parse(), enc.next(), enc.next()) {
                            m.rtpmaps
                                .push((pt, name.to_ascii_uppercase(), rate.parse().unwrap_or(0)));
                        }
                    }
                    None => {
                        if let Some(d) = Direction::from_attribute(value) {
                            m.direction = d;
                            if let Some(own) = own_direction.last_mut() {
                                *own = true;
                            }
                        }
                    }
                    _ => {}
                },
                ("a", None) => {
                    if let Some(d) = Direction::from_attribute(value) {
                        session_direction = d;
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Malformed("no v= line".into()));
        }
        for (m, own) in sd.media.iter_mut().zip(own_direction) {
            if !own {
                m.direction = session_direction;
            }
            // RFC 2543 hold: c=0.0.0.0 means "send me nothing".
            if m.connection.or(sd.connection).is_some_and(|ip| ip.is_unspecified()) {
                m.direction = match m.direction {
                    Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
                    _ => Direction::Inactive,
                };
            }
        }
        Ok(sd)
    }
}

impl MediaSection {
    fn codec_of(&self, format: &str) -> Option<(Codec, u8)> {
        let pt: u8 = format.parse().ok()?;
        match self.rtpmaps.iter().find(|(p, _, _)| *p == pt) {
            Some((_, name, 8000)) if name == "PCMU" => Some((Codec::Pcmu, pt)),
            Some((_, name, 8000)) if name == "PCMA" => Some((Codec::Pcma, pt)),
            Some(_) => None,
            None if pt == 0 => Some((Codec::Pcmu, 0)),
            None if pt == 8 => Some((Codec::Pcma, 8)),
            None => None,
        }
    }

    fn telephone_event(&self) -> Option<u8> {
        self.rtpmaps
            .iter()
            .find(|(pt, name, rate)| {
                name == "TELEPHONE-EVENT" && *rate == 8000 && self.formats.iter().any(|f| f == &pt.to_string())
            })
            .map(|(pt, _, _)| *pt)
    }

    fn is_rtp_audio(&self) -> bool {
        self.kind == "audio" && self.proto == "RTP/AVP"
    }
}

/// Our description without its `o=` line, to tell whether it changed.
pub fn without_origin(sdp: &str) -> String {
    sdp.lines()
        .filter(|l| !l.starts_with("o="))
        .collect::<Vec<_>>()
        .join("\n")
}

fn origin_and_session(out: &mut String, local: IpAddr, session_id: u64, version: u64) {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        out,
        "v=0\r\no=denwa {session_id} {version} IN {family} {local}\r\ns=denwa\r\nc=IN {family} {local}\r\nt=0 0\r\n"
    );
}

/// Answer an offer: the caller's most preferred of PCMU/PCMA, telephone-event
/// if offered, ptime 20. Every offered m-line gets an answer line (RFC 3264 §6);
/// the ones we do not serve are refused with port 0.
pub fn answer(
    offer: &SessionDescription,
    local: IpAddr,
    local_port: u16,
    session_id: u64,
) -> Result<(Negotiated, String), SdpError> {
    answer_with_version(offer, local, local_port, session_id, session_id)
}

/// [`answer`] for a later offer in the same session: `version` is our
/// `o=` version, which must grow whenever our description changes (RFC 3264 §8).
pub fn answer_with_version(
    offer: &SessionDescription,
    local: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
) -> Result<(Negotiated, String), SdpError> {
    let mut chosen: Option<(usize, Negotiated)> = None;
    for (i, m) in offer.media.iter().enumerate() {
        if chosen.is_some() || !m.is_rtp_audio() || m.port == 0 {
            continue;
        }
        let Some((codec, pt)) = m.formats.iter().find_map(|f| m.codec_of(f)) else {
            continue;
        };
        let ip = m
            .connection
            .or(offer.connection)
            .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
        chosen = Some((
            i,
            Negotiated {
                codec,
                payload_type: pt,
                telephone_event: m.telephone_event(),
                remote: SocketAddr::new(ip, m.port),
                direction: m.direction.answered(),
            },
        ));
    }
    let Some((index, negotiated)) = chosen else {
        return Err(SdpError::NotAcceptable("no audio stream offers PCMU or PCMA".into()));
    };

    let mut out = String::with_capacity(256);
    origin_and_session(&mut out, local, session_id, version);
    for (i, m) in offer.media.iter().enumerate() {
        if i != index {
            let _ = write!(
                out,
                "m={} 0 {} {}\r\n",
                m.kind,
                m.proto,
                m.formats.first().map_or("0", |f| f)
            );
            continue;
        }
        let pt = negotiated.payload_type;
        let _ = write!(out, "m=audio {local_port} RTP/AVP {pt}");
        if let Some(te) = negotiated.telephone_event {
            let _ = write!(out, " {te}");
        }
        let _ = write!(out, "\r\na=rtpmap:{pt} {}/8000\r\n", negotiated.codec.name());
        if let Some(te) = negotiated.telephone_event {
            let _ = write!(out, "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n");
        }
        let _ = write!(out, "a=ptime:20\r\na={}\r\n", negotiated.direction.attribute());
    }
    Ok((negotiated, out))
}

/// The payload type we offer for telephone-event when we make the offer.
pub const OFFERED_TELEPHONE_EVENT: u8 = 101;

/// Our offer, for an INVITE that arrived without SDP (RFC 3261 §13.2.1:
/// offer in the 200, answer in the ACK).
pub fn offer(local: IpAddr, local_port: u16, session_id: u64) -> String {
    let mut out = String::with_capacity(256);
    origin_and_session(&mut out, local, session_id, session_id);
    let te = OFFERED_TELEPHONE_EVENT;
    let _ = write!(
        out,
        "m=audio {local_port} RTP/AVP 0 8 {te}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    out
}

/// Read the answer to our offer (in the ACK): the first codec it accepted.
pub fn accept_answer(answer: &SessionDescription) -> Result<Negotiated, SdpError> {
    let m = answer
        .media
        .iter()
        .find(|m| m.is_rtp_audio() && m.port != 0)
        .ok_or_else(|| SdpError::NotAcceptable("answer has no active audio stream".into()))?;
    let (codec, payload_type) = m
        .formats
        .iter()
        .find_map(|f| m.codec_of(f))
        .ok_or_else(|| SdpError::NotAcceptable("answer accepted neither PCMU nor PCMA".into()))?;
    let ip = m
        .connection
        .or(answer.connection)
        .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: m.telephone_event(),
        remote: SocketAddr::new(ip, m.port),
        direction: m.direction.answered(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn offer_sdp(media: &str) -> SessionDescription {
        let text = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}");
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn hold_offers_are_answered_so_we_stop_sending() {
        // Media-level sendonly, session-level sendonly, and RFC 2543's c=0.0.0.0.
        for o in [
            offer_sdp("m=audio 6000 RTP/AVP 0\r\na=sendonly\r\n"),
            SessionDescription::parse(
                b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=sendonly\r\nm=audio 6000 RTP/AVP 0\r\n",
            )
            .unwrap(),
            SessionDescription::parse(
                b"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n",
            )
            .unwrap(),
        ] {
            let (n, sdp) = answer(&o, local(), 20000, 7).unwrap();
            assert!(!n.direction.we_send(), "{sdp}");
            assert!(sdp.contains("a=recvonly\r\n") || sdp.contains("a=inactive\r\n"), "{sdp}");
        }
        // A media-level attribute beats the session-level one.
        let o = SessionDescription::parse(
            b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=sendonly\r\nm=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n",
        )
        .unwrap();
        assert!(answer(&o, local(), 20000, 7).unwrap().0.direction.we_send());
    }

    #[test]
    fn later_answers_carry_the_version_given() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 0\r\n");
        let (_, first) = answer(&o, local(), 20000, 7).unwrap();
        let (_, again) = answer_with_version(&o, local(), 20000, 7, 8).unwrap();
        assert!(first.contains("o=denwa 7 7 ") && again.contains("o=denwa 7 8 "));
        assert_eq!(without_origin(&first), without_origin(&again));
    }

    #[test]
    fn picks_callers_preferred_g711() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        let (n, sdp) = answer(&o, local(), 20000, 7).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert!(sdp.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=ptime:20\r\n"));
        assert!(sdp.contains("a=fmtp:101 0-16\r\n"));
    }

    #[test]
    fn skips_unsupported_codecs_in_preference_order() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 9 18 0\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n");
        let (n, sdp) = answer(&o, local(), 20000, 7).unwrap();
        assert_eq!((n.codec, n.payload_type, n.telephone_event), (Codec::Pcmu, 0, None));
        assert!(sdp.contains("m=audio 20000 RTP/AVP 0\r\n"));
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn dynamic_payload_type_for_pcmu_is_honoured() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 96\r\na=rtpmap:96 pcmu/8000\r\n");
        let (n, _) = answer(&o, local(), 20000, 1).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 96));
    }

    #[test]
    fn no_common_codec_is_not_acceptable() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n");
        assert!(matches!(answer(&o, local(), 20000, 1), Err(SdpError::NotAcceptable(_))));
        let o = offer_sdp("m=video 6000 RTP/AVP 96\r\n");
        assert!(matches!(answer(&o, local(), 20000, 1), Err(SdpError::NotAcceptable(_))));
        let o = offer_sdp("m=audio 0 RTP/AVP 0\r\n");
        assert!(matches!(answer(&o, local(), 20000, 1), Err(SdpError::NotAcceptable(_))));
        let o = offer_sdp("m=audio 6000 RTP/SAVP 0\r\n");
        assert!(matches!(answer(&o, local(), 20000, 1), Err(SdpError::NotAcceptable(_))));
    }

    #[test]
    fn extra_streams_are_refused_with_port_zero() {
        let o = offer_sdp("m=video 6002 RTP/AVP 96\r\nm=audio 6000 RTP/AVP 0\r\n");
        let (_, sdp) = answer(&o, local(), 20000, 1).unwrap();
        let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 0"]);
    }

    #[test]
    fn media_level_connection_and_direction() {
        let o = offer_sdp("m=audio 6000 RTP/AVP 0\r\nc=IN IP4 127.0.0.9\r\na=recvonly\r\n");
        let (n, sdp) = answer(&o, local(), 20000, 1).unwrap();
        assert_eq!(n.remote, "127.0.0.9:6000".parse().unwrap());
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(sdp.contains("a=sendonly"));
        let o = offer_sdp("m=audio 6000 RTP/AVP 0\r\na=sendonly\r\n");
        let (n, _) = answer(&o, local(), 20000, 1).unwrap();
        assert!(!n.direction.we_send());
    }

    #[test]
    fn malformed_is_reported() {
        assert!(matches!(
            SessionDescription::parse(b"hello"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            SessionDescription::parse(b"v=0\r\nc=IN IP4 not-an-ip\r\n"),
            Err(SdpError::Malformed(_))
        ));
        let o = SessionDescription::parse(b"v=0\r\nm=audio 6000 RTP/AVP 0\r\n").unwrap();
        assert!(matches!(answer(&o, local(), 1, 1), Err(SdpError::Malformed(_))));
    }

    #[test]
    fn our_offer_and_its_answer() {
        let ours = offer(local(), 20000, 5);
        assert!(ours.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"));
        let reply = SessionDescription::parse(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 7000 RTP/AVP 8\r\n").unwrap();
        let n = accept_answer(&reply).unwrap();
        assert_eq!((n.codec, n.remote.port()), (Codec::Pcma, 7000));
    }
}
