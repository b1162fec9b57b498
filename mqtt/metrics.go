package mqtt

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connected       prometheus.Gauge
	published       prometheus.Counter
	failures        prometheus.Counter
	reconnects      prometheus.Counter
	dropped         prometheus.Counter
	connectFailures prometheus.Counter
	tooLarge        prometheus.Counter
	cmdRefused      *prometheus.CounterVec
}

func (c *Client) registerMetrics(reg prometheus.Registerer) error {
	c.m = metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diagd_mqtt_connected",
			Help: "1 while connected to the MQTT broker and set up, else 0."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_verdicts_published_total",
			Help: "Verdicts acknowledged by the broker (PUBACK), re-sends included."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_publish_failures_total",
			Help: "Publishes that failed or timed out (verdicts are re-sent from the outbox)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_reconnects_total",
			Help: "Connections to the broker after the first."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_events_dropped_total",
			Help: "Events dropped because the event queue was full, the publish failed or the event was too large."}),
		connectFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_connect_failures_total",
			Help: "Failed connection attempts (the reason is logged and published in state/mqtt)."}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_too_large_total",
			Help: "Messages larger than the broker takes: verdicts set aside in the dead-letter file, states and events dropped."}),
		cmdRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_mqtt_commands_refused_total",
			Help: "Commands not run, by reason: retained, busy, too_large, bad_payload, bad_name, unknown, not_allowed."},
			[]string{"reason"}),
	}
	for _, r := range []string{"retained", "busy", "too_large", "bad_payload", "bad_name", "unknown", "not_allowed"} {
		c.m.cmdRefused.WithLabelValues(r)
	}
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{c.m.connected, c.m.published, c.m.failures, c.m.reconnects, c.m.dropped,
		c.m.connectFailures, c.m.tooLarge, c.m.cmdRefused}
	cs = append(cs, c.outboxCollectors()...)
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("mqtt: register metrics: %w", err)
		}
	}
	return nil
}

// outboxCollectors read the outbox's stats at scrape time.
func (c *Client) outboxCollectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	return []prometheus.Collector{
		gauge("diagd_outbox_records", "Verdicts stored in the outbox, not yet acknowledged by the broker.",
			func() float64 { return float64(c.ob.Stats().Records) }),
		gauge("diagd_outbox_bytes", "Bytes of unacknowledged verdicts in the outbox.",
			func() float64 { return float64(c.ob.Stats().Bytes) }),
		gauge("diagd_outbox_usage_ratio", "Outbox fill: the larger of records/limit and bytes/limit.",
			func() float64 {
				s := c.ob.Stats()
				return max(float64(s.Records)/float64(s.MaxRecords), float64(s.Bytes)/float64(s.MaxBytes))
			}),
		gauge("diagd_outbox_healthy", "1 while the outbox stores verdicts, 0 while its disk refuses writes.",
			func() float64 { return b2f(c.ob.Health() == nil) }),
		counter("diagd_outbox_write_errors_total", "Failed outbox writes, fsyncs and segment rotations.",
			func() float64 { return float64(c.ob.Stats().WriteErrors) }),
		counter("diagd_outbox_corrupt_records_total", "Records lost to corruption found when the outbox was opened.",
			func() float64 { return float64(c.ob.Stats().Corrupt) }),
		counter("diagd_outbox_dead_letters_total", "Verdicts set aside in the dead-letter file (the broker refuses them).",
			func() float64 { return float64(c.ob.Stats().DeadLetters) }),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
