//! Digest authentication, client side (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760): answer a provider's 401/407 challenge. Written here rather than
//! with rsip's digest types, which mishandle `qop="auth,auth-int"`,
//! SHA-256 and hex `nc`.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn strength(self) -> u8 {
        match self {
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
        }
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered qop=auth (we never use auth-int: no body to protect).
    pub qop_auth: bool,
    /// The nonce merely expired: retry with the new one, it is not a failure.
    pub stale: bool,
}

/// Split `Digest a=b, c="d, e"` into (name, value) pairs, unquoting values.
fn params(rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let name = rest[start..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value = rest[s..i].trim().to_string();
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// Parse one challenge header value; `None` if it is not a usable Digest challenge.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut ch = Challenge {
        realm: String::new(),
        nonce: String::new(),
        opaque: None,
        algorithm: Algorithm::Md5,
        qop_auth: false,
        stale: false,
    };
    let mut has_qop = false;
    for (name, v) in params(rest) {
        match name.as_str() {
            "realm" => ch.realm = v,
            "nonce" => ch.nonce = v,
            "opaque" => ch.opaque = Some(v),
            "algorithm" => ch.algorithm = Algorithm::parse(&v)?,
            "qop" => {
                has_qop = true;
                ch.qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth"));
            }
            "stale" => ch.stale = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    // A server offering only qop=auth-int we cannot satisfy without bodies.
    if ch.nonce.is_empty() || (has_qop && !ch.qop_auth) {
        return None;
    }
    Some(ch)
}

/// The strongest usable challenge among several headers (RFC 8760: prefer SHA-256).
pub fn best_challenge<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    values
        .filter_map(parse_challenge)
        .max_by_key(|c| c.algorithm.strength())
}

/// The `Authorization` / `Proxy-Authorization` header value answering `ch`.
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = ch.algorithm;
    let mut ha1 = alg.hash(&format!("{username}:{}:{password}", ch.realm));
    if matches!(alg, Algorithm::Md5Sess | Algorithm::Sha256Sess) {
        ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let nc_hex = format!("{nc:08x}");
    let response = if ch.qop_auth {
        alg.hash(&format!("{ha1}:{}:{nc_hex}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        alg.name()
    );
    if ch.qop_auth {
        let _ = write!(out, ", qop=auth, nc={nc_hex}, cnonce=\"{}\"", quote(cnonce));
    }
    if let Some(opaque) = &ch.opaque {
        let _ = write!(out, ", opaque=\"{}\"", quote(opaque));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(header: &str) -> &str {
        header.split("response=\"").nth(1).unwrap().split('"').next().unwrap()
    }

    #[test]
    fn rfc2617_md5_example() {
        let ch = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(ch.qop_auth);
        let h = authorization(&ch, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b");
        assert_eq!(response_of(&h), "6629fae49393a05397450978507c4ef1");
        assert!(
            h.contains("nc=00000001")
                && h.contains("qop=auth,")
                && h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"")
        );
    }

    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        let base = "realm=\"http-auth@example.org\", qop=\"auth, auth-int\", nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let sha = format!("Digest {base}, algorithm=SHA-256");
        let md5 = format!("Digest {base}, algorithm=MD5");
        let best = best_challenge([md5.as_str(), sha.as_str()].into_iter()).unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let h = authorization(&best, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(
            response_of(&h),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let ch = parse_challenge(&md5).unwrap();
        let h = authorization(&ch, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(response_of(&h), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn no_qop_and_stale_and_rejects() {
        let ch = parse_challenge("Digest realm=\"r\",nonce=\"n\",stale=TRUE").unwrap();
        assert!(ch.stale && !ch.qop_auth);
        let h = authorization(&ch, "u", "p", "REGISTER", "sip:r", 1, "c");
        // RFC 2069 form: H(HA1:nonce:HA2), no qop/nc/cnonce.
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("REGISTER:sip:r");
        assert_eq!(response_of(&h), Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}")));
        assert!(!h.contains("qop"));
        assert!(parse_challenge("Basic realm=\"x\"").is_none());
        assert!(parse_challenge("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"").is_none());
        assert!(parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256").is_none());
        assert!(parse_challenge("Digest realm=\"x\"").is_none());
    }
}
