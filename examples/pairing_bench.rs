//! Pairing benchmark on loopback: handshake time (connect → sealed channel up, median of
//! 100) and the host's memory under a flood of 10 000 malformed connections.
//!
//! `cargo run --release --example pairing_bench`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use intercom::pairing::{HostRoom, Pin, RoomId};
use intercom::signaling::{join_tcp, spawn_host, HostEvent, HostHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn open_room(pin: &Pin) -> (HostHandle, SocketAddr, RoomId) {
    let id = RoomId::random();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = spawn_host(HostRoom::open(
        id,
        pin.clone(),
        Instant::now(),
        Duration::from_secs(600),
    ));
    h.serve_tcp(listener);
    (h, addr, id)
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn junk(addr: SocketAddr, i: usize) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    let bytes: Vec<u8> = match i % 4 {
        0 => b"\x00\x00\x00\x05hello".to_vec(),
        1 => 0xffff_ffffu32.to_be_bytes().to_vec(),
        2 => b"\x00\x00\x10\x00{\"t\":\"pake\",\"v\":1".to_vec(),
        _ => b"\x00\x00\x00\x0b{\"t\":\"pake\"}".to_vec(),
    };
    let _ = s.write_all(&bytes).await;
    let mut buf = [0u8; 128];
    let _ = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
}

#[tokio::main]
async fn main() {
    let pin = Pin::random();
    let mut times = Vec::new();
    for _ in 0..100 {
        let (mut h, addr, id) = open_room(&pin).await;
        let start = Instant::now();
        let guest = join_tcp(&[addr], id, &pin).await.expect("join");
        let Some(HostEvent::Joined(_host_side)) = h.next_event().await else {
            panic!("host did not join")
        };
        times.push(start.elapsed());
        drop(guest);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "handshake on loopback (100 runs): median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        ms(times[50]),
        ms(times[90]),
        ms(times[99])
    );

    let (mut h, addr, id) = open_room(&pin).await;
    let before = rss_kib("VmRSS:");
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        if set.len() >= 128 {
            set.join_next().await;
        }
        set.spawn(junk(addr, i));
    }
    while set.join_next().await.is_some() {}
    let flood = start.elapsed();
    let after = rss_kib("VmRSS:");
    let peak = rss_kib("VmHWM:");
    let start = Instant::now();
    let _guest = join_tcp(&[addr], id, &pin)
        .await
        .expect("honest guest after the flood");
    assert!(matches!(h.next_event().await, Some(HostEvent::Joined(_))));
    println!(
        "10 000 malformed connections in {:.1} s; process RSS {} KiB before, {} KiB after, peak {} KiB; honest join after it: {:.2} ms",
        flood.as_secs_f64(),
        before,
        after,
        peak,
        ms(start.elapsed())
    );
}
