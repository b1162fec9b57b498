package mosquittotest

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to the broker and can cut them, so a test can make the
// broker see a client vanish (no DISCONNECT: the broker publishes its last will) while
// the broker itself keeps running. It can also swallow the broker's PUBACKs, so a
// client sees its publishes go unacknowledged on a live connection.
type Proxy struct {
	Port   int
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	down    bool
	drop    bool // swallow PUBACKs from the broker
	dropped int
}

// NewProxy listens on a free 127.0.0.1 port and forwards to b. It closes when the test
// ends.
func NewProxy(t testing.TB, b *Broker) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, target: b.addr(), ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Sever()
	})
	return p
}

// URL is the proxy's address for paho.
func (p *Proxy) URL() string { return "tcp://127.0.0.1:" + strconv.Itoa(p.Port) }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *Proxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, copy func(io.Writer, io.Reader) error) {
		_ = copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(u, c, func(w io.Writer, r io.Reader) error { _, err := io.Copy(w, r); return err })
	go pipe(c, u, p.copyFromBroker)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// copyFromBroker forwards MQTT packets one by one, leaving out PUBACKs while asked to.
func (p *Proxy) copyFromBroker(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		pkt, err := readPacket(br)
		if err != nil {
			return err
		}
		p.mu.Lock()
		skip := p.drop && pkt[0]>>4 == 4 // PUBACK
		if skip {
			p.dropped++
		}
		p.mu.Unlock()
		if skip {
			continue
		}
		if _, err := w.Write(pkt); err != nil {
			return err
		}
	}
}

// readPacket reads one MQTT control packet: a type byte, the remaining length (1 to 4
// bytes of 7 bits), and that many bytes.
func readPacket(r *bufio.Reader) ([]byte, error) {
	pkt := make([]byte, 1, 64)
	if _, err := io.ReadFull(r, pkt); err != nil {
		return nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		pkt = append(pkt, b)
		n |= int(b&0x7f) << shift
		shift += 7
		if b < 0x80 || i == 3 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(pkt, body...), nil
}

// DropPubacks makes the proxy swallow (drop=true) or forward the broker's PUBACKs, and
// returns how many it has swallowed so far.
func (p *Proxy) DropPubacks(drop bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = drop
	return p.dropped
}

// Sever closes every forwarded connection at once, abruptly for both sides.
func (p *Proxy) Sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a pulled cable or a killed process
		}
		c.Close()
	}
}

// SetDown makes the proxy refuse (accept and close) new connections while down.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}
