package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/storeflow/storeflow/internal/certtest"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/store"
)

// storeACL is the production ACL: the app reads and writes the shop's
// topics, a phone only reads coupons, a sensor only writes shopper events.
const storeACL = `user storeflow
topic readwrite customer/#
user phone
topic read customer/prediction
user sensor
topic write customer/enter
topic write customer/move
topic write customer/exit`

const sensorUser, sensorPassword = "sensor", "sensor-pw"

// Mutual TLS with identities as user names: the app (certificate CN
// storeflow) runs the simulator through mosquitto, and a phone with its own
// certificate receives the predictions — and nothing the ACL keeps from it.
func TestMutualTLSWithACLDeliversPredictionsToThePhone(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "shop")
	m := mosquittotest.NewWith(t, mosquittotest.Options{
		Conf: "acl_file " + mosquittotest.ACLFile(t, storeACL),
		TLS:  &mosquittotest.TLS{CA: ca, RequireCertificate: true, UseIdentityAsUsername: true},
	})
	app := ca.Client("storeflow")
	sys := startOn(t, m.Addr(), map[string]string{
		"MQTT_BROKER_CERT_FILE":      ca.CertFile,
		"MQTT_CLIENT_CERT_FILE":      app.CertFile,
		"MQTT_CLIENT_KEY_FILE":       app.KeyFile,
		"MQTT_NAME":                  "storeflow-mtls",
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
	})

	// The phone asks for everything; the ACL lets only predictions through,
	// though the simulator publishes enter and move events all the time.
	phone := connectOutside(t, m.Addr(), "phone", outsideTLS(t, ca, ca.Client("phone")), "customer/#", 0)
	phone.predictionsFor(t, 3, 30*time.Second)
	for _, msg := range phone.pending {
		t.Fatalf("the phone received %s on %s: the ACL lets it read customer/prediction only", msg.Payload, msg.Topic)
	}
	if n := sys.metric(t, "storeflow_events_rejected_total"); n != 0 {
		t.Errorf("the simulator's own events were rejected %v times", n)
	}
}

// With passwords and the ACL: a sensor's lingering shopper gets a coupon the
// phone sees, and a focus event the phone is not allowed to publish never
// reaches the pipeline.
func TestPasswordAndACLKeepThePhoneFromPublishing(t *testing.T) {
	t.Parallel()
	pw := mosquittotest.PasswordFile(t, appUser, appPassword, phoneUser, phonePassword, sensorUser, sensorPassword)
	addr := mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw+"\nacl_file "+mosquittotest.ACLFile(t, storeACL))
	pwFile := filepath.Join(t.TempDir(), "mqtt-password")
	if err := os.WriteFile(pwFile, []byte(appPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startOn(t, addr, map[string]string{
		"MQTT_USERNAME":      appUser,
		"MQTT_PASSWORD_FILE": pwFile,
		"MQTT_NAME":          "storeflow-acl",
	})
	phone := connectOutside(t, addr, "phone", passwordAuth(phoneUser, phonePassword), "customer/prediction", 1)
	sensor := connectOutside(t, addr, "sensor", passwordAuth(sensorUser, sensorPassword), "", 0)

	now := time.Now().Unix()
	ids := customersWithCoupon(t, sys, store.Boys, now, 2)
	id, spoofed := ids[0], ids[1]

	// The phone's focus goes first and is acknowledged (MQTT 3.1.1 cannot
	// say "denied"), so had mosquitto passed it on, the app would get it
	// before any of the sensor's events below.
	tok := phone.c.Publish("customer/focus", 1, false, fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Boys"}`, spoofed, now))
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("phone publish customer/focus: %v", tok.Error())
	}

	s := &script{cl: sensor, id: id, ts: now}
	s.lingerInBoys()
	p := phone.nextOffer(t, 15*time.Second)
	if p.Customer.ID != id || p.Coupon.Department != "Boys" {
		t.Fatalf("prediction = %s, want a Boys coupon for the sensor's shopper %s (the phone spoofed %s)", p.raw, id, spoofed)
	}
	s.exit()
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=published")
	if n := sys.metric(t, "storeflow_focus_outcomes_total"); n != 1 {
		t.Errorf("%v focus events handled, want 1: the phone's own focus for %s was acted upon", n, spoofed)
	}
}

// A broker stopped and started again mid-run loses nothing: focus events a
// sensor publishes while the app is still reconnecting wait in the app's
// persistent session, and every coupon reaches the observer's.
func TestBrokerRestartLosesNoFocusEvents(t *testing.T) {
	t.Parallel()
	m := mosquittotest.NewWith(t, mosquittotest.Options{Conf: "allow_anonymous true", Persistent: true})
	sys := startOn(t, m.Addr(), map[string]string{
		"MQTT_QOS":  "1",
		"MQTT_NAME": "storeflow-restart",
	})
	session := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	connectOutside(t, m.Addr(), "observer", session, "customer/prediction", 1)
	connectOutside(t, m.Addr(), "sensor", session, "", 1)

	now := time.Now().Unix()
	const n = 3
	ids := customersWithCoupon(t, sys, store.Boys, now, n)

	m.Stop()
	m.Start()
	// The sensor is back at once; the app may still be in its backoff.
	sensor := connectOutside(t, m.Addr(), "sensor", session, "", 1)
	for i, id := range ids {
		tok := sensor.c.Publish("customer/focus", 1, false, fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Boys"}`, id, now+int64(i)))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("sensor publish focus %d after the restart: %v", i, tok.Error())
		}
	}
	t.Logf("the sensor's %d focus events were acknowledged with the app's connects at %v", n,
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=connect"))
	// A new connection under the observer's client id resumes its session.
	obs := connectOutside(t, m.Addr(), "observer", session, "", 1)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case msg := <-obs.msg:
			if msg.Topic != "customer/prediction" {
				continue
			}
			var p struct{ Customer struct{ ID string } }
			if err := json.Unmarshal(msg.Payload, &p); err != nil {
				t.Fatalf("prediction %s: %v", msg.Payload, err)
			}
			delete(want, p.Customer.ID)
		case <-deadline:
			t.Fatalf("no coupon for %d of %d shoppers within 30s of the restart: %v (mqtt client: connects %v, lost %v)",
				len(want), n, want, sys.metric(t, "storeflow_mqtt_client_events_total", "event=connect"),
				sys.metric(t, "storeflow_mqtt_client_events_total", "event=connection_lost"))
		}
	}
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_mqtt_client_events_total", "event=connection_lost")
	sys.waitMetric(t, 2, 5*time.Second, "storeflow_mqtt_client_events_total", "event=connect")
}

// A broker the app cannot use is an error from app.New within seconds, and
// the error names the setting to fix.
func TestExternalBrokerMisconfigurationFailsFast(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "shop")
	other := certtest.NewCA(t, "elsewhere")
	client := ca.Client("storeflow")
	mtls := mosquittotest.NewWith(t, mosquittotest.Options{
		Conf: "acl_file " + mosquittotest.ACLFile(t, storeACL),
		TLS:  &mosquittotest.TLS{CA: ca, RequireCertificate: true, UseIdentityAsUsername: true},
	})
	_, tlsPort, _ := net.SplitHostPort(mtls.Addr())
	pw := mosquittotest.PasswordFile(t, appUser, appPassword)
	_, pwPort, _ := net.SplitHostPort(mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw))

	for _, tc := range []struct {
		name  string
		env   map[string]string
		names string // the variable the error must name
	}{
		{"wrong CA", map[string]string{
			"MQTT_PORT": tlsPort, "MQTT_BROKER_CERT_FILE": other.CertFile,
			"MQTT_CLIENT_CERT_FILE": client.CertFile, "MQTT_CLIENT_KEY_FILE": client.KeyFile,
		}, "MQTT_BROKER_CERT_FILE"},
		{"no client certificate", map[string]string{
			"MQTT_PORT": tlsPort, "MQTT_BROKER_CERT_FILE": ca.CertFile,
		}, "MQTT_CLIENT_CERT_FILE"},
		{"wrong password", map[string]string{
			"MQTT_PORT": pwPort, "MQTT_USERNAME": appUser, "MQTT_PASSWORD": "not-" + appPassword,
		}, "MQTT_PASSWORD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_NAME": "storeflow-failfast", "MODEL_FILE": modeltest.File(t)}
			for k, v := range tc.env {
				env[k] = v
			}
			start := time.Now()
			err := newAppError(t, env)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("app.New succeeded, want an error naming %s", tc.names)
			}
			if !strings.Contains(err.Error(), tc.names) {
				t.Errorf("app.New: %v\nwant it to name %s", err, tc.names)
			}
			if strings.Contains(err.Error(), appPassword) {
				t.Errorf("app.New error shows a password: %v", err)
			}
			if took > 10*time.Second {
				t.Errorf("app.New took %s to fail, want under 10s", took)
			}
		})
	}
}

// connectOutside connects an outside client (a phone, a sensor, an
// observer) to the mosquitto at addr, set up by each of setup, and when
// filter is not empty subscribes to it at qos. Messages also arrive through
// the default handler, so a resumed persistent session's queued messages,
// delivered before any Subscribe, are kept too.
func connectOutside(t *testing.T, addr, id string, setup func(*paho.ClientOptions), filter string, qos byte) *client {
	t.Helper()
	cl := &client{t: t, msg: make(chan message, 10000)}
	deliver := func(_ paho.Client, m paho.Message) {
		select {
		case cl.msg <- message{m.Topic(), bytes.Clone(m.Payload())}:
		default:
			t.Errorf("outside client %s: more than %d messages unread", id, cap(cl.msg))
		}
	}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(deliver)
	if setup != nil {
		setup(opts)
	}
	cl.c = paho.NewClient(opts)
	if tok := cl.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("outside client %s: connect to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { cl.c.Disconnect(100) })
	if filter != "" {
		tok := cl.c.Subscribe(filter, qos, deliver)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("outside client %s: subscribe %s: %v", id, filter, tok.Error())
		}
	}
	return cl
}

// passwordAuth logs an outside client in with a user name and password.
func passwordAuth(user, password string) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(password) }
}

// outsideTLS makes an outside client speak TLS (ssl://), trusting ca and showing
// its own certificate.
func outsideTLS(t *testing.T, ca *certtest.CA, cert certtest.Pair) func(*paho.ClientOptions) {
	t.Helper()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca.CertFile)
	}
	pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *paho.ClientOptions) {
		for _, u := range o.Servers {
			u.Scheme = "ssl"
		}
		o.SetTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}})
	}
}
