package client

import (
	"context"
	"fmt"
	"time"
)

// ICEServer is one W3C RTCIceServer as the relay returns it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ICEConfig is the relay's answer to GET /api/v1/calls/ice-config
// (PROTOCOL.md §9.4).
type ICEConfig struct {
	TTL                int         `json:"ttl"`
	ICETransportPolicy string      `json:"ice_transport_policy"`
	ICEServers         []ICEServer `json:"ice_servers"`
}

// ForceRelay reports whether the relay's operator forces TURN relaying.
func (c ICEConfig) ForceRelay() bool { return c.ICETransportPolicy == "relay" }

// ICEConfig returns the relay's ICE configuration, cached for its ttl (less a
// margin, so credentials handed to a new call are never about to expire)
// while the client stays on the same relay node: after a failover the
// surviving node's configuration is fetched (a node's embedded TURN dies
// with it; an ICE restart gathers with the new one).
func (c *Client) ICEConfig(ctx context.Context) (ICEConfig, error) {
	c.iceMu.Lock()
	defer c.iceMu.Unlock()
	base := c.relayBase()
	if c.ice != nil && c.now().Before(c.iceExp) && c.iceBase == base {
		return *c.ice, nil
	}
	var cfg ICEConfig
	if err := c.authedGET(ctx, "/api/v1/calls/ice-config", &cfg); err != nil {
		return ICEConfig{}, fmt.Errorf("client: fetching the ICE config: %w", err)
	}
	if cfg.ICETransportPolicy != "all" && cfg.ICETransportPolicy != "relay" {
		return ICEConfig{}, fmt.Errorf("client: the relay sent ice_transport_policy %q (want all or relay)", cfg.ICETransportPolicy)
	}
	ttl := time.Duration(cfg.TTL) * time.Second
	ttl -= min(ttl/10, time.Minute)
	c.ice, c.iceExp, c.iceBase = &cfg, c.now().Add(ttl), c.relayBase() // the node that answered
	return cfg, nil
}
