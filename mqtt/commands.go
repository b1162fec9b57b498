package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// CommandHandler answers one command. payload is the command's JSON object without its
// "id" member (nil when the message was empty); the client owns the id and echoes it
// on the result. The result is marshalled into the "result" field.
type CommandHandler func(ctx context.Context, payload []byte) (any, error)

// Scope says what a command may do, for the operator who decides which clients may send
// it (broker ACLs, Config.Commands).
type Scope string

// Command scopes, from harmless to model-changing.
const (
	// ScopeRead only reports (status).
	ScopeRead Scope = "read"
	// ScopeOperate steers the judging of the line (trigger: which part the next frame is).
	ScopeOperate Scope = "operate"
	// ScopeJob starts a background job that writes files (augment).
	ScopeJob Scope = "job"
	// ScopeModel may change the model that judges (reload, retrain, cycle).
	ScopeModel Scope = "model"
)

// Limits on what comes in on <prefix>/cmd/<name>.
const (
	maxCommandName  = 64
	maxCommandIDLen = 128 // a string id's bytes, or a number's digits
)

type command struct {
	scope Scope
	h     CommandHandler
}

// commandInfo is one entry of the retained state "commands".
type commandInfo struct {
	Name    string `json:"name"`
	Scope   Scope  `json:"scope"`
	Allowed bool   `json:"allowed"`
}

// commandResult is the JSON answer on <prefix>/cmd/<name>/result.
type commandResult struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	ID     json.RawMessage `json:"id,omitempty"`
	Result any             `json:"result,omitempty"`
}

// HandleCommand registers the handler for <prefix>/cmd/<name> with its scope. Register
// before Start. A bad name or scope is a programming error and panics.
func (c *Client) HandleCommand(name string, scope Scope, h CommandHandler) {
	if !validCommandName(name) {
		panic(fmt.Sprintf("mqtt: command name %q: use 1 to %d characters, no /, + or #", name, maxCommandName))
	}
	switch scope {
	case ScopeRead, ScopeOperate, ScopeJob, ScopeModel:
	default:
		panic(fmt.Sprintf("mqtt: command %s: unknown scope %q", name, scope))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers[name] = command{scope, h}
}

func validCommandName(name string) bool {
	return name != "" && len(name) <= maxCommandName && !strings.ContainsAny(name, "/+#")
}

// allowed reports whether the allow-list (Config.Commands) lets name run.
func (c *Client) allowed(name string) bool {
	return len(c.cfg.Commands) == 0 || slices.Contains(c.cfg.Commands, name)
}

// publishCommands sets the retained state "commands": what this station answers.
func (c *Client) publishCommands() {
	c.mu.Lock()
	list := make([]commandInfo, 0, len(c.handlers))
	for name, cmd := range c.handlers {
		list = append(list, commandInfo{Name: name, Scope: cmd.scope, Allowed: c.allowed(name)})
	}
	c.mu.Unlock()
	slices.SortFunc(list, func(a, b commandInfo) int { return strings.Compare(a.Name, b.Name) })
	for _, n := range c.cfg.Commands {
		if !slices.ContainsFunc(list, func(ci commandInfo) bool { return ci.Name == n }) {
			c.log.Warn("mqtt: the command allow-list names a command this station does not have", "command", n)
		}
	}
	if err := c.SetState("commands", list); err != nil {
		c.log.Warn("mqtt: publish the command list", "err", err)
	}
}

// queuedCommand is a command taken from the broker, waiting for its name's worker.
type queuedCommand struct {
	payload []byte // nil when over MaxCommandBytes
	size    int
}

// enqueueCommand queues a command (holding a slot and a wg count) behind the earlier
// ones of its name, starting that name's worker when none runs.
func (c *Client) enqueueCommand(name string, cmd queuedCommand) {
	c.mu.Lock()
	q, running := c.cmdQueues[name]
	c.cmdQueues[name] = append(q, cmd)
	c.mu.Unlock()
	if !running {
		go c.drainCommands(name)
	}
}

// drainCommands runs the commands of one name in arrival order until none is left.
func (c *Client) drainCommands(name string) {
	for {
		c.mu.Lock()
		q := c.cmdQueues[name]
		if len(q) == 0 {
			delete(c.cmdQueues, name)
			c.mu.Unlock()
			return
		}
		cmd := q[0]
		c.cmdQueues[name] = q[1:]
		c.mu.Unlock()
		c.answer(name, c.runCommand(name, cmd.payload, cmd.size))
		<-c.cmdSlots
		c.wg.Done()
	}
}

func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	name, ok := strings.CutPrefix(m.Topic(), c.cfg.TopicPrefix+"/cmd/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return
	}
	if !validCommandName(name) {
		c.refuse("bad_name", "mqtt: command ignored: name too long", "bytes", len(name))
		return
	}
	if m.Retained() {
		// A retained command would run again at every reconnect (and for every late
		// subscriber): commands run only when sent.
		c.refuse("retained", "mqtt: retained command ignored; commands run only when sent "+
			"(clear it: mosquitto_pub -r -n -t "+m.Topic()+")", "command", name)
		return
	}
	c.mu.Lock()
	closing := c.closing
	if !closing {
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if closing {
		return
	}
	select {
	case c.cmdSlots <- struct{}{}:
	default:
		c.wg.Done()
		c.refuse("busy", "mqtt: command dropped: too many commands in progress", "command", name,
			"limit", c.cfg.MaxCommandsInFlight)
		return
	}
	var payload []byte
	if len(m.Payload()) <= c.cfg.MaxCommandBytes {
		payload = append([]byte(nil), m.Payload()...)
	}
	// Handlers may take long (retrain); never block paho's router.
	c.enqueueCommand(name, queuedCommand{payload: payload, size: len(m.Payload())})
}

// refuseLogEvery is how often refusals of one reason are logged: a flood of commands
// from outside must not flood the log (the counter counts them all).
const refuseLogEvery = 10 * time.Second

// refuse counts and logs a command that gets no answer.
func (c *Client) refuse(reason, msg string, args ...any) {
	c.m.cmdRefused.WithLabelValues(reason).Inc()
	now := time.Now()
	c.mu.Lock()
	last := c.refuseLogged[reason]
	logIt := now.Sub(last) >= refuseLogEvery
	if logIt {
		c.refuseLogged[reason] = now
	}
	c.mu.Unlock()
	if logIt {
		c.log.Warn(msg, args...)
	}
}

// runCommand checks and runs one command and returns its result. Refusals are counted
// and logged at most every refuseLogEvery per reason.
func (c *Client) runCommand(name string, payload []byte, size int) commandResult {
	c.mu.Lock()
	cmd, known := c.handlers[name]
	c.mu.Unlock()
	refused := func(reason, format string, a ...any) commandResult {
		res := commandResult{Error: fmt.Sprintf(format, a...)}
		c.refuse(reason, "mqtt: command refused", "command", name, "err", res.Error)
		return res
	}
	if size > c.cfg.MaxCommandBytes {
		return refused("too_large", "command %s: payload is %d bytes, limit %d", name, size, c.cfg.MaxCommandBytes)
	}
	id, body, err := parseCommand(payload)
	if err != nil {
		return refused("bad_payload", "command %s: %v", name, err)
	}
	var res commandResult
	switch {
	case !known:
		res = refused("unknown", "unknown command %q", name)
	case !c.allowed(name):
		res = refused("not_allowed", "command %q (scope %s) is not allowed on this station", name, cmd.scope)
	default:
		c.log.Info("mqtt: command", "command", name, "scope", cmd.scope, "id", string(id))
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
		out, err := cmd.h(ctx, body)
		cancel()
		if err != nil {
			res.Error = err.Error()
			c.log.Warn("mqtt: command failed", "command", name, "err", res.Error)
		} else {
			res.OK, res.Result = true, out
		}
	}
	res.ID = id
	return res
}

// answer publishes a command's result on <prefix>/cmd/<name>/result.
func (c *Client) answer(name string, res commandResult) {
	b, err := json.Marshal(res)
	if err == nil && len(b) > maxMessageBytes {
		err = fmt.Errorf("result is %d bytes, limit %d", len(b), maxMessageBytes)
	}
	if err != nil {
		res = commandResult{Error: fmt.Sprintf("command %s: %v", name, err), ID: res.ID}
		b, _ = json.Marshal(res)
		c.log.Warn("mqtt: command result not sendable", "command", name, "err", err)
	}
	if err := c.wait(c.pc.Publish(c.topic("cmd", name, "result"), 1, false, b)); err != nil {
		c.log.Warn("mqtt: publish command result", "command", name, "err", err)
	}
}

var errNotJSON = errors.New("payload is not valid JSON")

// parseCommand checks a command's payload (empty, or one JSON object) and splits off its
// "id", which must be a string of at most maxCommandIDLen bytes or a number. body is the
// object without "id", in its original order; nil for an empty payload.
func parseCommand(payload []byte) (id json.RawMessage, body []byte, err error) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return nil, nil, nil
	}
	if !json.Valid(p) {
		return nil, nil, errNotJSON
	}
	if p[0] != '{' {
		return nil, nil, errors.New("payload must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if key == "id" {
			if id != nil {
				return nil, nil, errors.New(`"id" given twice`)
			}
			if err := checkCommandID(v); err != nil {
				return nil, nil, err
			}
			id = v
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(v)
	}
	out.WriteByte('}')
	return id, out.Bytes(), nil
}

func checkCommandID(v json.RawMessage) error {
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if len(s) > maxCommandIDLen {
			return fmt.Errorf(`"id" is a %d-byte string, limit %d`, len(s), maxCommandIDLen)
		}
	case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
		if len(v) > maxCommandIDLen {
			return fmt.Errorf(`"id" is a %d-digit number, limit %d`, len(v), maxCommandIDLen)
		}
	default:
		return errors.New(`"id" must be a string or a number`)
	}
	return nil
}
