//! Shared by the DNS targets: the sample data set and the checks every answer
//! must pass.

use std::net::IpAddr;
use std::sync::OnceLock;

use gslb::dns::engine::{self, Outcome, Request, Scratch, Settings, Transport};
use gslb::snapshot::Snapshot;
use hickory_proto::op::Message;

pub fn sample() -> &'static (Snapshot, Settings) {
    static S: OnceLock<(Snapshot, Settings)> = OnceLock::new();
    S.get_or_init(gslb::dns::fuzzing::sample)
}

/// Answers `query` and checks the response: it parses with hickory-proto, keeps
/// the query's ID and (when the query had one readable question) its question
/// bytes, and fits the size the client can take over UDP.
pub fn answer_and_check(query: &[u8], src: IpAddr, transport: Transport, now_ms: u64) {
    let (snap, settings) = sample();
    let mut rng = fastrand::Rng::with_seed(u64::from(query.first().copied().unwrap_or(0)));
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let req = Request {
        bytes: query,
        src,
        transport,
        now_ms,
    };
    let Some(o) = engine::answer(snap, settings, &req, &mut rng, &mut scratch, &mut out) else {
        // Dropped: only shorter than a header, or a response.
        assert!(query.len() < 12 || query[2] & 0x80 != 0, "dropped a query");
        return;
    };
    check(query, &out, transport, &o);
}

pub fn check(query: &[u8], resp: &[u8], transport: Transport, o: &Outcome) {
    let msg = Message::from_vec(resp)
        .unwrap_or_else(|e| panic!("response does not parse ({e}): {resp:02x?} for {query:02x?}"));
    assert_eq!(resp[..2], query[..2], "ID");
    assert!(resp[2] & 0x80 != 0, "QR set");
    let qd = u16::from_be_bytes([resp[4], resp[5]]);
    assert!(qd <= 1);
    if qd == 1 {
        // The question is echoed byte for byte: same bytes at the same offset.
        let qlen = msg.queries[0].name.len() + 4;
        assert_eq!(
            resp.get(12..12 + qlen),
            query.get(12..12 + qlen),
            "question"
        );
    }
    if transport == Transport::Udp {
        // Without EDNS 512 bytes; with it at most 1232 (the query's own size, when
        // it parses, at least 512).
        let limit = match Message::from_vec(query).ok().and_then(|q| q.edns) {
            Some(e) => usize::from(e.max_payload().clamp(512, 1232)),
            None if has_opt(query) => 1232,
            None => 512,
        };
        assert!(
            resp.len() <= limit,
            "{} bytes over UDP, limit {limit}",
            resp.len()
        );
    }
    // TC=1 exactly when the answer did not fit or the rate limiter slipped it.
    let tc = resp[2] & 0x02 != 0;
    assert_eq!(tc, o.truncated || o.rrl == gslb::dns::rrl::Verdict::Slip);
}

/// Whether the query may carry an OPT record that hickory could not parse (then
/// only the 1232 ceiling is checked).
fn has_opt(query: &[u8]) -> bool {
    query.len() > 12 && query[10..12] != [0, 0]
}
