//! Where worker managers reach the interchange: `engine.address` (ENDPOINT.md §6.6).

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};

use gc_config::engine::{AddressConfig, AddressFunction};
use nix::ifaddrs::getifaddrs;
use serde_json::Value as Json;

use crate::ProviderError;

/// The IPv4 addresses of the interface `ifname` (`address_by_interface`).
pub fn address_by_interface(ifname: &str) -> Result<String, ProviderError> {
    let addrs =
        getifaddrs().map_err(|e| ProviderError::Address(format!("cannot list interfaces: {e}")))?;
    for ifa in addrs {
        if ifa.interface_name != ifname {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Ok(sin.ip().to_string());
        }
    }
    Err(ProviderError::Address(format!(
        "interface {ifname:?} has no IPv4 address"
    )))
}

/// This host's name resolved (`address_by_hostname`).
pub fn address_by_hostname() -> Result<String, ProviderError> {
    let name = hostname::get()
        .map_err(|e| ProviderError::Address(format!("cannot read the host name: {e}")))?
        .to_string_lossy()
        .into_owned();
    let mut addrs = (name.as_str(), 0)
        .to_socket_addrs()
        .map_err(|e| ProviderError::Address(format!("cannot resolve {name:?}: {e}")))?;
    addrs
        .find(|a| a.is_ipv4())
        .or_else(|| (name.as_str(), 0).to_socket_addrs().ok()?.next())
        .map(|a| a.ip().to_string())
        .ok_or_else(|| ProviderError::Address(format!("{name:?} resolves to no address")))
}

/// The source address of the default route (`address_by_route`). No packet is sent: a
/// connected UDP socket only asks the kernel which address it would use.
pub fn address_by_route() -> Result<String, ProviderError> {
    let sock = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .map_err(|e| ProviderError::Address(format!("no default route: {e}")))?;
    let local = sock
        .local_addr()
        .map_err(|e| ProviderError::Address(format!("no default route: {e}")))?;
    Ok(local.ip().to_string())
}

/// Every IPv4 address of this host, loopback last (the default: managers try each).
pub fn all_addresses() -> Vec<String> {
    let mut out: Vec<IpAddr> = Vec::new();
    if let Ok(addrs) = getifaddrs() {
        for ifa in addrs {
            if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
                let ip = IpAddr::V4(sin.ip());
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out.sort_by_key(|ip| ip.is_loopback());
    if out.is_empty() {
        out.push(IpAddr::from([127, 0, 0, 1]));
    }
    out.iter().map(IpAddr::to_string).collect()
}

/// The addresses managers should try, from `engine.address` (`None`: all of this host's).
pub fn resolve(config: Option<&AddressConfig>) -> Result<Vec<String>, ProviderError> {
    match config {
        None => Ok(all_addresses()),
        Some(AddressConfig::Literal(a)) => Ok(vec![a.clone()]),
        Some(AddressConfig::Function { function, options }) => match function {
            AddressFunction::ByInterface => {
                let ifname = options
                    .get("ifname")
                    .and_then(Json::as_str)
                    .ok_or_else(|| {
                        ProviderError::Config(
                        "address_by_interface() missing 1 required positional argument: 'ifname'"
                            .into(),
                    )
                    })?;
                Ok(vec![address_by_interface(ifname)?])
            }
            AddressFunction::ByHostname => Ok(vec![address_by_hostname()?]),
            AddressFunction::ByRoute => Ok(vec![address_by_route()?]),
            AddressFunction::ByQuery => Err(ProviderError::Config(
                "address_by_query asks an outside web service for this host's public address; \
                 this endpoint does not: set `address` to the address or use \
                 address_by_interface"
                    .into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_interface_has_its_address() {
        assert_eq!(address_by_interface("lo").unwrap(), "127.0.0.1");
        assert!(address_by_interface("no-such-if0").is_err());
    }

    #[test]
    fn all_addresses_puts_loopback_last() {
        let all = all_addresses();
        assert_eq!(all.last().map(String::as_str), Some("127.0.0.1"));
    }

    #[test]
    fn resolves_configured_addresses() {
        let cfg = gc_config::UserEndpointConfig::from_yaml(
            "engine:\n  type: GlobusComputeEngine\n  address:\n    type: address_by_interface\n    ifname: lo\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(resolve(cfg.engine.address.as_ref()).unwrap(), ["127.0.0.1"]);
        let lit = AddressConfig::Literal("10.1.2.3".into());
        assert_eq!(resolve(Some(&lit)).unwrap(), ["10.1.2.3"]);
    }
}
