package certtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// The certificates verify the way a TLS peer checks them: the server's for
// 127.0.0.1 and localhost against the CA, the client's for client auth.
func TestCertificatesVerify(t *testing.T) {
	ca := NewCA(t, "test")
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file is not PEM")
	}
	for _, tc := range []struct {
		name  string
		pair  Pair
		host  string
		usage x509.ExtKeyUsage
	}{
		{"server by IP", ca.Server("broker"), "127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"server by name", ca.Server("broker"), "localhost", x509.ExtKeyUsageServerAuth},
		{"client", ca.Client("phone"), "", x509.ExtKeyUsageClientAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := tls.LoadX509KeyPair(tc.pair.CertFile, tc.pair.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(kp.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}
