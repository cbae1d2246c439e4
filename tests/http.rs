//! The HTTP listener serves only `/metrics`, `/healthz` and `/readyz`, binds to loopback by
//! default, and slow or huge requests cannot take it (or the process's sockets) over.

use std::time::{Duration, Instant};

use hotline::config::Config;
use hotline::telemetry::Telemetry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> std::net::SocketAddr {
    let stop = tokio_util::sync::CancellationToken::new();
    hotline::http::serve("127.0.0.1:0".parse().unwrap(), Telemetry::default(), stop).await.unwrap().bound
}

#[tokio::test]
async fn a_stop_closes_the_listener_and_waits_for_it() {
    let stop = tokio_util::sync::CancellationToken::new();
    let server =
        hotline::http::serve("127.0.0.1:0".parse().unwrap(), Telemetry::default(), stop.clone()).await.unwrap();
    let bound = server.bound;
    assert!(raw(bound, b"GET /healthz HTTP/1.0\r\n\r\n").await.starts_with("HTTP/1.0 200"));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.stopped()).await.expect("the listener stops at once");
    assert!(TcpStream::connect(bound).await.is_err(), "nothing listens any more");
}

/// Sends raw bytes and returns what the server answered before closing (empty on a reset).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_listener_binds_to_loopback_by_default() {
    let config = Config::parse("[kafka]\nbrokers = \"127.0.0.1:9092\"\n", []).unwrap();
    assert!(config.settings().unwrap().listen.ip().is_loopback());
}

#[tokio::test]
async fn only_the_three_endpoints_are_served() {
    let addr = start().await;
    let status = |r: String| r.lines().next().unwrap_or_default().to_owned();
    assert!(status(raw(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await).contains("200"));
    assert!(status(raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await).contains("200"));
    assert!(status(raw(addr, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await).contains("503"));
    for path in ["/", "/admin", "/metrics/../etc/passwd", "/snapshots"] {
        let r = raw(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
        assert!(status(r).contains("404"), "{path}");
    }
    let post = raw(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").await;
    assert!(status(post).contains("405"));
}

#[tokio::test]
async fn huge_requests_are_refused_and_slow_clients_cannot_hold_it() {
    let addr = start().await;

    // Headers of a megabyte: refused without reading them all.
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend(b"\r\n\r\n");
    let r = raw(addr, &huge).await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{}", r.lines().next().unwrap_or_default());

    // A hundred clients that never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    // A scrape still gets through once their header time is up, and they are cut off.
    let started = Instant::now();
    let r = raw(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{}", r.lines().next().unwrap_or_default());
    assert!(started.elapsed() < Duration::from_secs(10), "scrape took {:?}", started.elapsed());
    let mut buf = [0u8; 64];
    let cut = tokio::time::timeout(Duration::from_secs(10), slow[0].read(&mut buf)).await;
    assert!(matches!(cut, Ok(Ok(_)) | Ok(Err(_))), "a slow client is disconnected");
}
