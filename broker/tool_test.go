package broker

import "testing"

// A tool reaches the broker storeflow uses: the embedded one on loopback
// (also when it listens on every interface), or the external one as
// configured; always under its own id and with a clean session.
func TestToolClient(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		host string
	}{
		{"embedded default", Config{Port: 1883, Name: "demoClient", BrokerCertFile: "ca.pem"}, "tcp://127.0.0.1:1883"},
		{"embedded on MQTT_PORT", Config{Port: 1884, Name: "demoClient"}, "tcp://127.0.0.1:1884"},
		{"embedded on every interface", Config{Port: 1883, ListenAddr: "0.0.0.0:2883", Name: "demoClient"}, "tcp://127.0.0.1:2883"},
		{"embedded on ::", Config{Port: 1883, ListenAddr: "[::]:2883", Name: "demoClient"}, "tcp://127.0.0.1:2883"},
		{"embedded on a named address", Config{Port: 1883, ListenAddr: "10.1.2.3:1883", Name: "demoClient"}, "tcp://10.1.2.3:1883"},
		{"external", Config{Host: "ssl://broker.example:8883", Port: 1883, Name: "storeflow-1", BrokerCertFile: "ca.pem"}, "ssl://broker.example:8883"},
	} {
		got := tt.cfg.ToolClient("replay-1")
		if got.Host != tt.host || got.Name != "replay-1" || !got.CleanSession || got.Port != tt.cfg.Port {
			t.Errorf("%s: host %q, name %q, clean session %v; want %q, replay-1, true", tt.name, got.Host, got.Name, got.CleanSession, tt.host)
		}
		if tls := got.BrokerCertFile != ""; tls != !tt.cfg.Embedded() {
			t.Errorf("%s: CA file %q: the embedded broker's plain listener takes no TLS, an external broker keeps its", tt.name, got.BrokerCertFile)
		}
	}
}
