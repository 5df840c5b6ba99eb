package broker

import (
	"context"
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/storeflow/storeflow/internal/ratelog"
)

// refusedWillTopic is where a Last Will that its client may no longer write
// goes instead: a $ topic no client may read, so the will reaches nobody.
const refusedWillTopic = "$storeflow/refused-will"

// authHook decides who connects to the embedded broker and what each client
// may publish, retain, leave as a will and read. Every way in is checked
// against the same rights: a publish, a retained publish, a Last Will (at
// CONNECT and again when it fires), a subscription and each delivery, and
// taking over a session by its client id. storeflow's own parts use the
// inline client, which mochi never checks.
type authHook struct {
	mqtt.HookBase
	srv  *mqtt.Server
	auth *Auth // nil: no BROKER_AUTH_FILE, connected clients may do anything but what own forbids
	// certListeners require a verified client certificate whose common name
	// is the user name; anonymous lists the listeners open without one.
	certListeners map[string]bool
	anonymous     map[string]bool
	// own are storeflow's own topics (focus, prediction): only an acl retain
	// line lets an outside client retain a message there.
	own         map[string]bool
	maxRetained int
	timeout     time.Duration // BROKER_CONNECT_TIMEOUT: how long a login may wait for a password check
	passwords   *passwordGate // nil without an auth file
	adm         *admission
	m           *metrics
	warn        *ratelog.Logger
	log         *slog.Logger
}

func (h *authHook) ID() string { return "storeflow-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill:
		return true
	}
	return false
}

// OnConnect runs every check of a login, before mochi touches any session:
// who the client is, whether its will is its to leave, and whether its client
// id is its to use. A refusal is answered with the CONNACK code that says
// why, counted and logged (rate-limited); mochi then closes the connection.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	user, reason, code := h.identify(cl, pk)
	if reason == "" {
		reason, code = h.checkWill(user, pk)
	}
	if reason == "" {
		reason, code = h.checkClientID(cl, user)
	}
	gc, _ := cl.Net.Conn.(*gatedConn)
	if reason != "" {
		if gc != nil {
			gc.refused.Store(true)
		}
		h.adm.refused(reason, cl.Net.Listener, cl.Net.Remote, "client_id", cl.ID, "user", user)
		_ = h.srv.SendConnack(cl, refusalCode(code, cl.Properties.ProtocolVersion), false, nil)
		return code
	}
	if gc != nil {
		gc.admitted.Store(true)
	}
	return nil
}

// identify establishes the client's user name: the certificate's common name
// on a certificate listener, the checked user name with an auth file, none
// for an anonymous listener.
func (h *authHook) identify(cl *mqtt.Client, pk packets.Packet) (user, reason string, code packets.Code) {
	listener := cl.Net.Listener
	if h.certListeners[listener] {
		name := peerCommonName(cl)
		if name == "" {
			return "", refuseNoCert, packets.ErrNotAuthorized
		}
		// Identity as user name: the ACLs see the certificate's name, whatever
		// user name the client sent. The client is not yet visible to other
		// goroutines, so the write is safe.
		cl.Properties.Username = []byte(name)
		return name, "", packets.CodeSuccess
	}
	if h.auth == nil {
		if !h.anonymous[listener] {
			return "", refuseAnonymous, packets.ErrNotAuthorized
		}
		cl.Properties.Username = nil // anonymous: a user name would mean nothing
		return "", "", packets.CodeSuccess
	}
	user = string(pk.Connect.Username)
	if !pk.Connect.UsernameFlag || user == "" {
		return "", refuseAnonymous, packets.ErrNotAuthorized
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	if reason, ok := h.passwords.check(ctx, cl.Net.Remote, user, pk.Connect.Password); !ok {
		if reason == refuseCredentials {
			return user, reason, packets.ErrBadUsernameOrPassword
		}
		return user, reason, packets.ErrServerBusy
	}
	return user, "", packets.CodeSuccess
}

// checkWill refuses a Last Will the user could not publish itself.
func (h *authHook) checkWill(user string, pk packets.Packet) (string, packets.Code) {
	if !pk.Connect.WillFlag {
		return "", packets.CodeSuccess
	}
	if !h.mayWrite(user, pk.Connect.WillTopic) || pk.Connect.WillRetain && !h.mayRetain(user, pk.Connect.WillTopic) {
		return refuseWill, packets.ErrNotAuthorized
	}
	return "", packets.CodeSuccess
}

// checkClientID refuses a client id that names storeflow's inline client or
// a session of another user: taking it over would hand that user's queued
// messages to this one.
func (h *authHook) checkClientID(cl *mqtt.Client, user string) (string, packets.Code) {
	existing, ok := h.srv.Clients.Get(cl.ID)
	if !ok {
		return "", packets.CodeSuccess
	}
	if existing.Net.Inline || string(existing.Properties.Username) != user {
		return refuseClientID, packets.ErrClientIdentifierNotValid
	}
	return "", packets.CodeSuccess
}

// refusalCode is the CONNACK code for a refusal in the client's protocol:
// MQTT 3 has no "not authorized" or "busy" among its few codes, so mochi's
// mapping needs the nearest v5 code that it maps.
func refusalCode(code packets.Code, version byte) packets.Code {
	if version >= 5 {
		return code
	}
	switch code {
	case packets.ErrNotAuthorized:
		return packets.ErrBadUsernameOrPassword // → 0x05 not authorized
	case packets.ErrServerBusy:
		return packets.ErrServerUnavailable // → 0x03 server unavailable
	}
	return code
}

// OnConnectAuthenticate lets in what OnConnect admitted. (Without an auth hook
// mochi refuses every client; the checks themselves are in OnConnect, which
// can answer with the right code.)
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	gc, ok := cl.Net.Conn.(*gatedConn)
	return ok && gc.admitted.Load()
}

// mayWrite reports whether user may publish to topic.
func (h *authHook) mayWrite(user, topic string) bool {
	return h.auth == nil || h.auth.Allows(user, topic, true)
}

// mayRetain reports whether user may leave a retained message on topic:
// anywhere it may write, except on storeflow's own topics, which need an
// explicit acl retain line (and are never retainable without an auth file).
func (h *authHook) mayRetain(user, topic string) bool {
	if !h.mayWrite(user, topic) {
		return false
	}
	if !h.own[topic] {
		return true
	}
	return h.auth != nil && h.auth.AllowsRetain(user, topic)
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if !write && strings.HasPrefix(topic, "$storeflow/") {
		return false
	}
	var ok bool
	switch {
	case h.auth != nil:
		ok = h.auth.Allows(string(cl.Properties.Username), topic, write)
	case !write && strings.HasPrefix(topic, "$"):
		// Without an auth file $SYS tells the broker's figures only to clients
		// on this host, whatever listener they came in on.
		ok = isLoopbackRemote(cl.Net.Remote)
	default:
		ok = true
	}
	if !ok {
		action := denySubscribe
		if write {
			action = denyPublish
		}
		h.m.denied.WithLabelValues(action).Inc()
		h.warn.Log(slog.LevelInfo, "deny:"+action, "acl denied", "client_id", cl.ID,
			"user", string(cl.Properties.Username), "topic", topic, "write", write)
	}
	return ok
}

// OnPublish applies the retain rules to an outside client's publish (the
// write right itself was checked by OnACLCheck just before): no retained
// message on storeflow's own topics without an acl retain line, and none
// beyond BROKER_MAX_RETAINED. A refused publish is dropped whole: a client
// that asked for retain did not ask for a plain publish.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !pk.FixedHeader.Retain {
		return pk, nil
	}
	action, code := "", packets.CodeSuccess
	switch {
	case !h.mayRetain(string(cl.Properties.Username), pk.TopicName):
		action, code = denyRetain, packets.ErrNotAuthorized
	case len(pk.Payload) > 0 && h.srv.Topics.Retained.Len() >= h.maxRetained:
		if _, exists := h.srv.Topics.Retained.Get(pk.TopicName); !exists {
			action, code = denyRetainCap, packets.ErrQuotaExceeded
		}
	}
	if action == "" {
		return pk, nil
	}
	h.m.denied.WithLabelValues(action).Inc()
	h.warn.Log(slog.LevelInfo, "deny:"+action, "retained publish refused", "client_id", cl.ID,
		"user", string(cl.Properties.Username), "topic", pk.TopicName, "reason", action)
	if cl.Properties.ProtocolVersion >= 5 && pk.FixedHeader.Qos > 0 {
		return pk, code // mochi answers with this reason code in the PUBACK
	}
	// MQTT 3 has no refusal in a PUBACK: acknowledge (so the client does not
	// resend forever) and drop.
	return pk, packets.CodeSuccessIgnore
}

// OnWill checks a will again when it fires: it goes nowhere unless its
// client may still publish (and retain) it.
func (h *authHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || h.mayWrite(user, will.TopicName) && (!will.Retain || h.mayRetain(user, will.TopicName)) {
		return will, nil
	}
	h.m.denied.WithLabelValues(denyWill).Inc()
	h.warn.Log(slog.LevelWarn, "deny:will", "will refused when it fired", "client_id", cl.ID, "user", user, "topic", will.TopicName)
	return mqtt.Will{TopicName: refusedWillTopic, Flag: will.Flag}, nil
}

// protocolHook fixes what mochi writes to clients: MQTT 3.1 and 3.1.1 have no
// DISCONNECT from the server (mosquitto_sub -V 311 reports one as a protocol
// error), so such a client's connection is just closed; and MQTT 5 clients
// are told BROKER_MAX_PACKET_SIZE in the CONNACK, as the protocol asks.
type protocolHook struct {
	mqtt.HookBase
	maxPacket uint32
}

func (h *protocolHook) ID() string { return "storeflow-protocol" }

func (h *protocolHook) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

func (h *protocolHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Disconnect:
		if cl.Properties.ProtocolVersion < 5 {
			// An invalid type makes mochi's WritePacket write nothing and
			// return an error; DisconnectClient closes the connection anyway.
			pk.FixedHeader.Type = packets.Reserved
		}
	case packets.Connack:
		if cl.Properties.ProtocolVersion >= 5 && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.Properties.MaximumPacketSize = h.maxPacket
		}
	}
	return pk
}
