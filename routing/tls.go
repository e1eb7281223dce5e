package routing

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSConfig is the TLS of a connection side: files in PEM. Certificates
// and CAs are read again when their files change, so renewed certificates
// take effect without a restart.
type TLSConfig struct {
	// Cert and Key are this side's certificate chain and key. Required to
	// serve TLS; for a client, optional (mutual TLS).
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
	// CA verifies the other side: a server's certificate (client side;
	// empty: the system roots), or client certificates (server side:
	// `client_ca`, which then requires one).
	CA string `koanf:"ca"`
	// ServerName overrides the name checked in the server's certificate
	// (client side). Default: the host of the address dialled.
	ServerName string `koanf:"server_name"`
}

// Enabled reports whether any TLS setting is given.
func (c TLSConfig) Enabled() bool {
	return c.Cert != "" || c.Key != "" || c.CA != "" || c.ServerName != ""
}

// Validate checks the settings go together; key names the section. The
// files are read when a connection is set up (ClientTLS, ServerTLS), so
// that a configuration naming another machine's files still loads.
func (c TLSConfig) Validate(key string) error {
	if (c.Cert == "") != (c.Key == "") {
		return fmt.Errorf("%s.cert and %s.key: give both or neither (cert %q, key %q)", key, key, c.Cert, c.Key)
	}
	return nil
}

// ClientTLS returns a client tls.Config following c's files.
func (c TLSConfig) ClientTLS() (*tls.Config, error) {
	files := &reloadingFiles{cfg: c}
	if err := files.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.Cert != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, err := files.current()
			return cert, err
		}
	}
	if c.CA != "" {
		// Verify against the CA read now, reloading it on change.
		cfg.InsecureSkipVerify = true // replaced by VerifyConnection below
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, pool, err := files.current()
			if err != nil {
				return err
			}
			name := cs.ServerName
			if c.ServerName != "" {
				name = c.ServerName
			}
			opts := x509.VerifyOptions{DNSName: name, Roots: pool, Intermediates: x509.NewCertPool()}
			for _, cert := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(cert)
			}
			_, err = cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	return cfg, nil
}

// ServerTLS returns a server tls.Config following c's files; with a CA,
// clients must present a certificate it signed.
func (c TLSConfig) ServerTLS() (*tls.Config, error) {
	if c.Cert == "" {
		return nil, fmt.Errorf("a TLS server needs cert and key")
	}
	files := &reloadingFiles{cfg: c}
	if err := files.load(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, err := files.current()
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}
	return base, nil
}

// reloadCheck is how often the files are looked at for changes, at most.
const reloadCheck = time.Second

// reloadingFiles holds the certificate and CA of a TLSConfig, read again
// when a file's size or time changes.
type reloadingFiles struct {
	cfg     TLSConfig
	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamps  [3][2]int64
	checked time.Time
}

func (f *reloadingFiles) load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loadLocked()
}

func (f *reloadingFiles) loadLocked() error {
	if f.cfg.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cfg.Cert, f.cfg.Key)
		if err != nil {
			return fmt.Errorf("loading %s and %s: %w", f.cfg.Cert, f.cfg.Key, err)
		}
		f.cert = &cert
	}
	if f.cfg.CA != "" {
		pool, err := loadPool(f.cfg.CA)
		if err != nil {
			return err
		}
		f.pool = pool
	}
	f.stamps = f.stampsNow()
	f.checked = time.Now()
	return nil
}

func (f *reloadingFiles) stampsNow() [3][2]int64 {
	var s [3][2]int64
	for i, path := range []string{f.cfg.Cert, f.cfg.Key, f.cfg.CA} {
		if fi, err := os.Stat(path); path != "" && err == nil {
			s[i] = [2]int64{fi.Size(), fi.ModTime().UnixNano()}
		}
	}
	return s
}

// current returns the certificate and CA pool, reloaded if the files
// changed; a failed reload keeps the last good ones.
func (f *reloadingFiles) current() (*tls.Certificate, *x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= reloadCheck {
		f.checked = time.Now()
		if f.stampsNow() != f.stamps {
			_ = f.loadLocked() // half-written files: try again at the next check
		}
	}
	return f.cert, f.pool, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
