package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics follow Prometheus conventions: base units, _total counters, a diagd_ prefix.
// The MQTT client registers its own (connection, publishing, outbox depth).
type metrics struct {
	verdicts          *prometheus.CounterVec
	inference         prometheus.Histogram
	latency           prometheus.Histogram
	reconnects        *prometheus.CounterVec
	badFiles          *prometheus.CounterVec
	dropped           *prometheus.CounterVec
	cameraUp          *prometheus.GaugeVec
	cameraFPS         *prometheus.GaugeVec
	outboxNearFull    prometheus.Gauge
	lost              prometheus.Counter
	modelInfo         *prometheus.GaugeVec
	modelLoadFailures prometheus.Counter
	negativesKept     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	return &metrics{
		verdicts: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_verdicts_total",
			Help: "Verdicts stored in the outbox, by result (pass, fail, unknown)."}, []string{"verdict"})).(*prometheus.CounterVec),
		inference: f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "diagd_inference_seconds",
			Help:    "Detector time per frame (batch time / batch size), preprocessing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})).(prometheus.Histogram),
		latency: f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "diagd_verdict_latency_seconds",
			Help:    "From frame capture (or file completion) to the verdict being durable in the outbox.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})).(prometheus.Histogram),
		reconnects: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_camera_reconnects_total",
			Help: "Attempts to reopen a camera after a failure."}, []string{"camera"})).(*prometheus.CounterVec),
		badFiles: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_bad_files_total",
			Help: "Unreadable, truncated or non-image files skipped in watched folders."}, []string{"camera"})).(*prometheus.CounterVec),
		dropped: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_frames_dropped_total",
			Help: "Live frames read but not judged because the detector was busy."}, []string{"camera"})).(*prometheus.CounterVec),
		cameraUp: f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_camera_up",
			Help: "1 while a camera is online."}, []string{"camera"})).(*prometheus.GaugeVec),
		cameraFPS: f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_camera_fps",
			Help: "Frames read per second, smoothed."}, []string{"camera"})).(*prometheus.GaugeVec),
		outboxNearFull: f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "diagd_outbox_near_full",
			Help: "1 while the outbox is above 80% of a limit."})).(prometheus.Gauge),
		lost: f(prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_verdicts_not_stored_total",
			Help: "Verdicts that could not be stored: only at a stop with the outbox full."})).(prometheus.Counter),
		modelInfo: f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_model_info",
			Help: "1 for the model version being served."}, []string{"version"})).(*prometheus.GaugeVec),
		modelLoadFailures: f(prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_model_load_failures_total",
			Help: "Models that failed to load (the serving one stayed)."})).(prometheus.Counter),
		negativesKept: f(prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_negatives_kept_total",
			Help: "Passing frames saved to the negatives pool."})).(prometheus.Counter),
	}
}

func (m *metrics) setModel(version string) {
	m.modelInfo.Reset()
	m.modelInfo.WithLabelValues(version).Set(1)
}
