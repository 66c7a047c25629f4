//! Everything denwa parses from the network: SIP messages (our normaliser
//! and rsip), SDP bodies, digest challenges. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = "127.0.0.1:5060".parse().unwrap();
    let _ = denwa::sip::message::parse(data, source);
    let _ = denwa::sip::sdp::SessionDescription::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = denwa::sip::auth::parse_challenge(text);
    }
});
