//! `--trust-proxy`: which TCP peers are reverse proxies whose
//! `X-Forwarded-For` (the client's address) and `X-Forwarded-Host` count.
//!
//! Anyone can send those headers. They mean something only when the peer
//! that sent them is a proxy of ours, which overwrote or appended them; a
//! client that reaches the server directly and sends them is counted by its
//! own TCP address (so it cannot dodge the per-address limits by naming a
//! fresh address in each request). So the flag names the proxies, by
//! address or network: `--trust-proxy 127.0.0.1,10.0.0.0/8,::1`.
//!
//! The flag alone (or `true`, as older unit files say) means `loopback`:
//! `127.0.0.0/8` and `::1`, a proxy on the same host, which is what the
//! shipped deploy files run. `off` (the default) trusts no peer. Trusting
//! every peer must be written out: `0.0.0.0/0,::/0`.
//!
//! IPv4 is compared as IPv4 however it is spelled: a peer seen on an IPv6
//! socket as `::ffff:127.0.0.1` is `127.0.0.1` (and matches `loopback`),
//! and a network written `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
//!
//! No I/O: [`TrustProxy::parse`] reads the flag's text and
//! [`TrustProxy::trusts`] answers for one peer.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The proxies named by `--trust-proxy`: a list of networks (an address
/// is a network of one).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustProxy {
    networks: Vec<Network>,
}

/// One network: an address with its host bits cleared, and the prefix
/// length that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    base: IpAddr,
    prefix: u8,
}

impl TrustProxy {
    /// Trusts no peer (`off`, the default).
    pub fn none() -> Self {
        TrustProxy::default()
    }

    /// Trusts the loopback addresses: `127.0.0.0/8` and `::1`.
    pub fn loopback() -> Self {
        TrustProxy {
            networks: loopback_networks().to_vec(),
        }
    }

    /// Parses the flag's value: `off`/`false`/`no`/`0`, `loopback`/`true`/
    /// `yes`/`1` (also the flag alone), or a comma-separated list of
    /// addresses, networks (`ADDR/PREFIX`) and `loopback`. Host bits
    /// below a network's prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<TrustProxy, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "false" | "no" | "0" => return Ok(TrustProxy::none()),
            "true" | "yes" | "on" | "1" => return Ok(TrustProxy::loopback()),
            _ => {}
        }
        let mut networks = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.eq_ignore_ascii_case("loopback") {
                true => networks.extend_from_slice(&loopback_networks()),
                false => networks.push(Network::parse(item)?),
            }
        }
        networks.dedup();
        Ok(TrustProxy { networks })
    }

    /// Is `peer` one of the proxies? An IPv4 peer seen on an IPv6 socket
    /// (`::ffff:10.0.0.5`) is compared as the IPv4 address it is.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|n| n.contains(peer))
    }

    /// True when no peer is trusted.
    pub fn is_off(&self) -> bool {
        self.networks.is_empty()
    }
}

fn loopback_networks() -> [Network; 2] {
    [
        Network {
            base: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
            prefix: 8,
        },
        Network {
            base: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}

impl Network {
    /// `ADDR` or `ADDR/PREFIX`.
    fn parse(item: &str) -> Result<Network, String> {
        let refuse = || {
            format!(
                "expects off, loopback, or addresses and networks such as \
                 127.0.0.1,10.0.0.0/8,::1, got {item:?}"
            )
        };
        let (addr, prefix) = match item.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (item, None),
        };
        let written: IpAddr = addr.parse().map_err(|_| refuse())?;
        let bits: u8 = match written {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => bits,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(refuse()),
            },
            Some(_) => return Err(refuse()),
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one
        // (`10.0.0.0/8`): peers are compared as IPv4 addresses. Its prefix
        // must reach into the IPv4 part.
        let addr = written.to_canonical();
        let prefix = match (written, addr) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(refuse)?,
            _ => prefix,
        };
        Ok(Network {
            base: masked(addr, prefix),
            prefix,
        })
    }

    fn contains(&self, peer: IpAddr) -> bool {
        match (self.base, peer) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                masked(peer, self.prefix) == self.base
            }
            _ => false,
        }
    }
}

/// `addr` with every bit after the first `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl fmt::Display for TrustProxy {
    /// `off`, or the networks as `ADDR/PREFIX`, comma-separated (what the
    /// start log and `--help` show).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.networks.is_empty() {
            return f.write_str("off");
        }
        for (i, n) in self.networks.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{}/{}", n.base, n.prefix)?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrustProxy {
    /// `TrustProxy(10.0.0.0/8,::1/128)`: the flag's value as it is read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustProxy({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_trust_exactly_their_peers() {
        let t = TrustProxy::parse("127.0.0.1, 10.0.0.0/8,::1,fd00::/8").unwrap();
        for yes in ["127.0.0.1", "10.0.0.1", "10.255.255.255", "::1", "fd12::5"] {
            assert!(t.trusts(ip(yes)), "{yes}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "9.255.255.255",
            "::2",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(!t.trusts(ip(no)), "{no}");
        }
        assert_eq!(t.to_string(), "127.0.0.1/32,10.0.0.0/8,::1/128,fd00::/8");
    }

    #[test]
    fn an_ipv4_peer_on_an_ipv6_socket_is_compared_as_ipv4() {
        let t = TrustProxy::parse("192.168.1.0/24").unwrap();
        assert!(t.trusts(ip("::ffff:192.168.1.7")));
        assert!(!t.trusts(ip("::ffff:192.168.2.7")));
        let mapped = TrustProxy::parse("::ffff:10.0.0.1").unwrap();
        assert!(mapped.trusts(ip("10.0.0.1")), "{mapped}");
        assert_eq!(mapped.to_string(), "10.0.0.1/32");
        // A mapped network's prefix counts the 96 bits before the IPv4 part.
        let net = TrustProxy::parse("::ffff:127.0.0.0/104").unwrap();
        assert_eq!(net.to_string(), "127.0.0.0/8");
        assert!(net.trusts(ip("127.0.0.1")) && net.trusts(ip("::ffff:127.9.9.9")));
        assert!(!net.trusts(ip("128.0.0.1")));
        let all_v4 = TrustProxy::parse("::ffff:0.0.0.0/96").unwrap();
        assert!(all_v4.trusts(ip("203.0.113.9")) && !all_v4.trusts(ip("2001:db8::1")));
        assert!(TrustProxy::parse("::ffff:10.0.0.0/64").is_err());
        // The loopback networks match a loopback peer on a dual-stack socket.
        let lo = TrustProxy::loopback();
        assert!(lo.trusts(ip("::ffff:127.0.0.1")) && lo.trusts(ip("::ffff:127.1.2.3")));
    }

    #[test]
    fn the_switch_words_keep_their_meaning_with_loopback_for_on() {
        for off in ["off", "false", "no", "0", "", "  OFF "] {
            assert!(TrustProxy::parse(off).unwrap().is_off(), "{off:?}");
        }
        for on in ["true", "yes", "on", "1", "loopback", "LOOPBACK", "True"] {
            let t = TrustProxy::parse(on).unwrap();
            assert_eq!(t, TrustProxy::loopback(), "{on:?}");
            assert!(t.trusts(ip("127.0.0.1")) && t.trusts(ip("127.3.4.5")) && t.trusts(ip("::1")));
            assert!(!t.trusts(ip("10.0.0.1")) && !t.trusts(ip("::2")));
        }
        let both = TrustProxy::parse("loopback,10.0.0.0/8").unwrap();
        assert!(both.trusts(ip("10.9.9.9")) && both.trusts(ip("127.0.0.1")));
        assert_eq!(TrustProxy::none().to_string(), "off");
    }

    #[test]
    fn everyone_must_be_written_out() {
        let any = TrustProxy::parse("0.0.0.0/0,::/0").unwrap();
        assert!(any.trusts(ip("203.0.113.9")) && any.trusts(ip("2001:db8::1")));
        assert!(TrustProxy::parse("any").is_err());
    }

    #[test]
    fn host_bits_are_cleared_and_bad_items_refused() {
        let t = TrustProxy::parse("10.1.2.3/8").unwrap();
        assert_eq!(t.to_string(), "10.0.0.0/8");
        assert!(t.trusts(ip("10.200.0.1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "nginx",
            "1.2.3.4:80",
            "10.0.0/8",
            "10.0.0.0/+8",
        ] {
            let e = TrustProxy::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("10.0.0.0/8"), "{bad}: {e}");
        }
    }
}
