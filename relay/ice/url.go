package ice

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Default ports of RFC 7064 (stun) and RFC 7065 (turn).
const (
	defaultPort    = 3478
	defaultTLSPort = 5349
)

// maxURLLen bounds one ICE server URL; real ones are under 100 bytes.
const maxURLLen = 512

// iceURL is a parsed stun:, stuns:, turn: or turns: URL (RFC 7064, RFC 7065).
type iceURL struct {
	scheme    string // "stun", "stuns", "turn" or "turns"
	host      string // name, IPv4 address or IPv6 address without brackets
	port      int    // explicit or the scheme's default
	transport string // "", "udp" or "tcp"; only for turn(s)
}

func (u iceURL) isTURN() bool { return u.scheme == "turn" || u.scheme == "turns" }

// parseICEURL parses s under the W3C RTCIceServer rules duet enforces
// (docs/PROTOCOL.md §9.4): a stun(s) URL carries no query, a turn(s) URL at
// most "transport=udp" or "transport=tcp". Schemes are lower case, there is
// no "//" authority form, no user info, path or fragment.
func parseICEURL(s string) (iceURL, error) {
	var u iceURL
	if len(s) > maxURLLen {
		return u, fmt.Errorf("URL longer than %d bytes", maxURLLen)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return u, fmt.Errorf("%q has no scheme", s)
	}
	switch scheme {
	case "stun", "stuns", "turn", "turns":
	default:
		return u, fmt.Errorf("%q: scheme must be stun, stuns, turn or turns", s)
	}
	u.scheme = scheme
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if !u.isTURN() {
			return u, fmt.Errorf("%q: a %s URL may not carry a query", s, scheme)
		}
		switch query {
		case "transport=udp":
			u.transport = "udp"
		case "transport=tcp":
			u.transport = "tcp"
		default:
			return u, fmt.Errorf("%q: query may only be transport=udp or transport=tcp", s)
		}
	}
	host, portStr, err := splitHostPort(hostport)
	if err != nil {
		return u, fmt.Errorf("%q: %w", s, err)
	}
	u.host = host
	u.port = defaultPort
	if scheme == "stuns" || scheme == "turns" {
		u.port = defaultTLSPort
	}
	if portStr != "" {
		if len(portStr) > 5 || strings.Trim(portStr, "0123456789") != "" {
			return u, fmt.Errorf("%q: bad port", s)
		}
		p, _ := strconv.Atoi(portStr)
		if p < 1 || p > 65535 {
			return u, fmt.Errorf("%q: port out of range", s)
		}
		u.port = p
	}
	return u, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port" and
// checks the host; port is "" when absent.
func splitHostPort(hp string) (host, port string, err error) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", fmt.Errorf("unclosed [")
		}
		host, after := hp[1:end], hp[end+1:]
		addr, perr := netip.ParseAddr(host)
		if perr != nil || !addr.Is6() || addr.Zone() != "" {
			return "", "", fmt.Errorf("bad IPv6 address")
		}
		if after == "" {
			return host, "", nil
		}
		if after[0] != ':' || len(after) == 1 {
			return "", "", fmt.Errorf("bad port")
		}
		return host, after[1:], nil
	}
	host, port, hasPort := strings.Cut(hp, ":")
	if hasPort && port == "" {
		return "", "", fmt.Errorf("empty port")
	}
	if !validHost(host) {
		return "", "", fmt.Errorf("bad host")
	}
	return host, port, nil
}

// validHost accepts an IPv4 address or a DNS name (letters, digits, '-' and
// '_' in non-empty labels of at most 63 bytes, 253 bytes in all).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		return addr.Is4()
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hostForURL brackets an IPv6 address.
func hostForURL(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// checkHost validates an operator-supplied host (TURN_HOST, Embedded.Host):
// a DNS name, an IPv4 address, or an IPv6 address with or without brackets.
// It returns the bare host.
func checkHost(h string) (string, error) {
	bare := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if addr, err := netip.ParseAddr(bare); err == nil && addr.Is6() && addr.Zone() == "" {
		return bare, nil
	}
	if !validHost(h) {
		return "", fmt.Errorf("%q is not a host name or IP address (no scheme or port)", h)
	}
	return h, nil
}
