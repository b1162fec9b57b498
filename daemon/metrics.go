package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
	panics            *prometheus.CounterVec

	jobRunning  *prometheus.GaugeVec
	jobProgress *prometheus.GaugeVec
	jobsTotal   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		verdicts: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_verdicts_total",
			Help: "Verdicts stored in the outbox, by result (pass, fail, unknown)."}, []string{"verdict"}),
		inference: f.NewHistogram(prometheus.HistogramOpts{Name: "diagd_inference_seconds",
			Help:    "Detector time per frame (batch time / batch size), preprocessing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		latency: f.NewHistogram(prometheus.HistogramOpts{Name: "diagd_verdict_latency_seconds",
			Help:    "From frame capture (or file completion) to the verdict being durable in the outbox.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_camera_reconnects_total",
			Help: "Attempts to reopen a camera after a failure."}, []string{"camera"}),
		badFiles: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_bad_files_total",
			Help: "Unreadable, truncated or non-image files skipped in watched folders."}, []string{"camera"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_frames_dropped_total",
			Help: "Live frames read but not judged because the detector was busy."}, []string{"camera"}),
		cameraUp: f.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_camera_up",
			Help: "1 while a camera is online."}, []string{"camera"}),
		cameraFPS: f.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_camera_fps",
			Help: "Frames read per second, smoothed."}, []string{"camera"}),
		outboxNearFull: f.NewGauge(prometheus.GaugeOpts{Name: "diagd_outbox_near_full",
			Help: "1 while the outbox is above 80% of a limit."}),
		lost: f.NewCounter(prometheus.CounterOpts{Name: "diagd_verdicts_not_stored_total",
			Help: "Verdicts that could not be stored: only at a stop with the outbox full."}),
		modelInfo: f.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_model_info",
			Help: "1 for the model version being served."}, []string{"version"}),
		modelLoadFailures: f.NewCounter(prometheus.CounterOpts{Name: "diagd_model_load_failures_total",
			Help: "Models that failed to load (the serving one stayed)."}),
		negativesKept: f.NewCounter(prometheus.CounterOpts{Name: "diagd_negatives_kept_total",
			Help: "Passing frames saved to the negatives pool."}),
		panics: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_panics_recovered_total",
			Help: "Panics recovered (the batch's verdicts became unknown, the job failed, the command failed)."}, []string{"where"}),
		jobRunning: f.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_job_running",
			Help: "1 while a job (augment, retrain, cycle) runs."}, []string{"job"}),
		jobProgress: f.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_job_progress_ratio",
			Help: "Completion of the running job's current phase, 0..1."}, []string{"job"}),
		jobsTotal: f.NewCounterVec(prometheus.CounterOpts{Name: "diagd_jobs_total",
			Help: "Jobs finished, by job and outcome (ok, promoted, rejected, skipped, failed, cancelled)."}, []string{"job", "outcome"}),
	}
}

func (m *metrics) setModel(version string) {
	m.modelInfo.Reset()
	m.modelInfo.WithLabelValues(version).Set(1)
}
