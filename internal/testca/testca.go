// Package testca makes a throwaway certificate authority and a server
// certificate signed by it, for tests of TLS (the relay's HTTPS and
// WebSocket, TURN over TLS): Go clients trust it through Pool, Chromium
// through SPKIHash (--ignore-certificate-errors-spki-list).
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority and one server certificate it signed.
type CA struct {
	// Pool trusts the CA only.
	Pool *x509.CertPool
	// Cert is the server certificate (leaf and key).
	Cert tls.Certificate
	// CertPEM and KeyPEM are the server certificate (with the CA after it)
	// and its key, as files take them.
	CertPEM, KeyPEM []byte
	// CAPEM is the CA certificate.
	CAPEM []byte
	// SPKIHash is base64(SHA-256(the server certificate's public key
	// info)), what Chromium's --ignore-certificate-errors-spki-list takes.
	SPKIHash string
}

// New makes a CA and a server certificate for hosts (DNS names or IPs),
// valid from an hour ago for a day.
func New(hosts ...string) (*CA, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "duet test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	ca := &CA{Pool: x509.NewCertPool()}
	ca.Pool.AddCert(caCert)
	ca.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	ca.CertPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.CAPEM...)
	ca.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	ca.Cert, err = tls.X509KeyPair(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	ca.SPKIHash = base64.StdEncoding.EncodeToString(sum[:])
	return ca, nil
}

// WriteFiles writes the server certificate and key into dir as cert.pem
// and key.pem (and the CA as ca.pem) and returns their paths.
func (ca *CA) WriteFiles(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for name, data := range map[string][]byte{certFile: ca.CertPEM, keyFile: ca.KeyPEM, filepath.Join(dir, "ca.pem"): ca.CAPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return "", "", fmt.Errorf("testca: %w", err)
		}
	}
	return certFile, keyFile, nil
}

// ServerConfig is a TLS server configuration with the server certificate.
func (ca *CA) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Cert}, MinVersion: tls.VersionTLS12}
}

// ClientConfig trusts the CA for serverName.
func (ca *CA) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}
