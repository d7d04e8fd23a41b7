package turnserver

import (
	"net"
	"net/netip"
)

// Reasons a peer address is refused; they label duet_turn_denied_peers_total.
const (
	denyInvalid     = "invalid"
	denyUnspecified = "unspecified"
	denyLoopback    = "loopback"
	denyPrivate     = "private"
	denyLinkLocal   = "link_local"
	denyMulticast   = "multicast"
	denyReserved    = "reserved"
)

// reservedPrefixes are special-purpose ranges (RFC 6890 and friends) that are
// neither private nor loopback by net/netip's definition but still must not
// be reachable through a public relay: "this network", carrier-grade NAT
// shared space, IETF protocol assignments, benchmarking, the reserved class E
// block including broadcast, local-use NAT64 and deprecated site-local IPv6.
var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("fec0::/10"),
}

// Prefixes that embed an IPv4 address, which is checked in turn: the NAT64
// well-known prefix (RFC 6052, address in the last 32 bits) and 6to4
// (RFC 3056, address in bits 16..47).
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// peerDenyReason classifies a peer IP. It returns "" for an address that may
// be relayed to, otherwise the reason it may not.
func peerDenyReason(addr netip.Addr) string {
	if !addr.IsValid() {
		return denyInvalid
	}
	addr = addr.Unmap().WithZone("")
	switch {
	case addr.IsUnspecified():
		return denyUnspecified
	case addr.IsLoopback():
		return denyLoopback
	case addr.IsPrivate():
		return denyPrivate
	case addr.IsLinkLocalUnicast():
		return denyLinkLocal
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return denyMulticast
	}
	for _, p := range reservedPrefixes {
		if p.Contains(addr) {
			return denyReserved
		}
	}
	if addr.Is6() {
		b := addr.As16()
		var embedded netip.Addr
		switch {
		case nat64Prefix.Contains(addr):
			embedded = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(addr):
			embedded = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if embedded.IsValid() {
			return peerDenyReason(embedded)
		}
	}
	return ""
}

// permit is the pion/turn PermissionHandler: it runs for every
// CreatePermission, ChannelBind and Connect request, before the server sends
// anything to the peer. Peers inside cfg.AllowPeers are always admitted.
func (s *Server) permit(clientAddr net.Addr, peerIP net.IP) bool {
	addr, _ := netip.AddrFromSlice(peerIP)
	reason := s.denyReason(addr)
	if reason == "" {
		return true
	}
	s.deniedPeers.WithLabelValues(reason).Inc()
	s.log.Debug("turn: refused peer", "client", clientAddr, "peer", addr, "reason", reason)
	return false
}

// denyReason is why the server refuses to relay to addr, "" when it does
// not: a peer inside AllowPeers is always admitted.
func (s *Server) denyReason(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, p := range s.allowPeers {
		if p.Contains(addr) {
			return ""
		}
	}
	return peerDenyReason(addr)
}
