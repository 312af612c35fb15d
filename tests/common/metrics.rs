//! The one parser of the Prometheus text `GET /metrics` answers: every
//! sample by its full key (`name` or `name{labels}`), and the readings
//! the tests take from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::http::get;

/// `GET /metrics`: its text, after checking the status and the Prometheus
/// text content type.
pub fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics", "");
    assert_eq!(r.status, 200);
    let ctype = r.header("Content-Type").unwrap_or("");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    r.text()
}

/// Every unlabelled sample and labelled sample of a scrape, by its full
/// text key (`name` or `name{labels}`).
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_string(), value.parse().expect("sample value"))
        })
        .collect()
}

/// The value of an unlabelled sample in Prometheus text (`name value`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    metric_with(text, name, "")
}

/// The value of a sample `name{labels} value` with exactly this label text
/// (e.g. `code="1000"`), or of `name value` when `labels` is empty.
pub fn metric_with(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    samples(text).get(&key).copied()
}

/// The value of one unlabelled metric, scraped now from `addr`; panics when
/// it is absent.
pub fn read_metric(addr: SocketAddr, name: &str) -> f64 {
    metric(&scrape(addr), name).unwrap_or_else(|| panic!("no {name} in /metrics"))
}
