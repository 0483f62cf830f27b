//! Architecture Invariant check: answering a query allocates nothing once the
//! worker's buffers are warm, whatever the query (NameService addresses of each
//! policy, ECS with the scope rule, cookies made and checked, NSID, rate limiting
//! passing, slipping and dropping, NXDOMAIN, NODATA, ANY, CHAOS, truncation,
//! FORMERR, NOTIMP). A counting global allocator is switched on around the loop.
//! Its own test binary: the allocator is the whole binary's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gslb::dns::engine::{self, Request, Scratch, Transport};
use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RecordType};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn q(name: &str, rtype: RecordType, f: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 77;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    f(&mut m);
    m.to_vec().unwrap()
}

fn opt(code: u16, data: &[u8]) -> impl FnOnce(&mut Message) {
    let data = data.to_vec();
    move |m: &mut Message| {
        m.edns
            .as_mut()
            .unwrap()
            .options_mut()
            .insert(EdnsOption::Unknown(code, data));
    }
}

#[test]
fn answering_allocates_nothing() {
    let (snap, settings) = gslb::dns::fuzzing::sample();
    let none = |_: &mut Message| {};
    let mut queries = vec![
        q("app.f.example.", RecordType::A, none),
        q("app.f.example.", RecordType::AAAA, none),
        q("ratio.f.example.", RecordType::A, none),
        q(
            "loc.f.example.",
            RecordType::A,
            opt(8, &[0, 1, 24, 0, 10, 1, 9]),
        ),
        q(
            "loc.f.example.",
            RecordType::A,
            opt(8, &[0, 1, 24, 0, 100, 64, 1]),
        ),
        q(
            "loc.f.example.",
            RecordType::AAAA,
            opt(8, &[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0xff, 1]),
        ),
        q("down.f.example.", RecordType::A, none),
        q("open.f.example.", RecordType::A, none),
        q("nx.f.example.", RecordType::A, none),
        q("www.f.example.", RecordType::TXT, none),
        q("alias.f.example.", RecordType::A, none),
        q("loop1.f.example.", RecordType::A, none),
        q("x.wild.f.example.", RecordType::A, none),
        q("deep.sub.f.example.", RecordType::A, none),
        q("f.example.", RecordType::ANY, none),
        q("f.example.", RecordType::NS, none),
        q("big.f.example.", RecordType::TXT, none),
        q("example.com.", RecordType::A, none),
        q("www.f.example.", RecordType::A, opt(10, &[1; 8])),
        q("www.f.example.", RecordType::A, opt(10, &[1; 24])),
        q("www.f.example.", RecordType::A, opt(10, &[1; 5])),
        q("www.f.example.", RecordType::A, opt(3, &[])),
        q("id.server.", RecordType::TXT, |m| {
            m.queries[0].query_class = DNSClass::CH
        }),
        q("www.f.example.", RecordType::A, |m| {
            m.metadata.op_code = OpCode::Notify
        }),
    ];
    // A valid server cookie, as a client that learnt it sends it back.
    let src: IpAddr = "192.0.2.1".parse().unwrap();
    let now_ms = 1_750_000_000_000;
    let mut rng = fastrand::Rng::with_seed(3);
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let learn = q("www.f.example.", RecordType::A, opt(10, &[2; 8]));
    let req = Request {
        bytes: &learn,
        src,
        transport: Transport::Udp,
        now_ms,
    };
    engine::answer(&snap, &settings, &req, &mut rng, &mut scratch, &mut out).unwrap();
    let cookie = Message::from_vec(&out)
        .unwrap()
        .edns
        .unwrap()
        .options()
        .as_ref()
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Unknown(10, d) => Some(d.clone()),
            _ => None,
        });
    queries.push(q(
        "www.f.example.",
        RecordType::A,
        opt(10, &cookie.unwrap()),
    ));

    let mut run = |rounds: usize| {
        let mut verdicts = [0usize; 3];
        for round in 0..rounds {
            for (i, query) in queries.iter().enumerate() {
                let transport = if (i + round) % 5 == 0 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let req = Request {
                    bytes: query,
                    src,
                    transport,
                    // The same second: the limiter's buckets run dry and it slips
                    // and drops (the sample's rate is 50/s).
                    now_ms,
                };
                let o = engine::answer(&snap, &settings, &req, &mut rng, &mut scratch, &mut out);
                if let Some(o) = o {
                    verdicts[o.rrl as usize] += 1;
                }
            }
        }
        verdicts
    };
    // Warm up: the buffers grow to the largest answer once.
    run(3);
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let verdicts = run(200);
    COUNTING.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(allocs, 0, "{allocs} allocations while answering");
    // The loop went through the limiter's three outcomes.
    assert!(verdicts.iter().all(|&n| n > 0), "{verdicts:?}");
}
