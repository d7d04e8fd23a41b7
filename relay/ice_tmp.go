package relay

// iceConfig is a stand-in for ice.Config until relay/ice compiles.
type iceConfig = struct {
	TTL                int    `json:"ttl"`
	ICETransportPolicy string `json:"ice_transport_policy"`
	ICEServers         []struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username,omitempty"`
		Credential string   `json:"credential,omitempty"`
	} `json:"ice_servers"`
}
