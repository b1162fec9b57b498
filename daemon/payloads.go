package daemon

// The JSON of every MQTT message the daemon publishes besides verdicts (mqtt.Verdict)
// and camera state (capture.Status): retained states, events and command results. One
// type per message, so a payload's fields are checked by the compiler, and the README's
// MQTT section can be read against this file.

import (
	"time"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/mqtt/outbox"
)

// modelState is state/model (retained).
type modelState struct {
	Loaded       bool                     `json:"loaded"`
	Version      string                   `json:"version,omitempty"`
	Architecture string                   `json:"architecture,omitempty"`
	Input        *detect.InputSpec        `json:"input,omitempty"`
	Validation   *detect.ValidationScores `json:"validation,omitempty"`
	Dir          string                   `json:"dir"`
	Error        string                   `json:"error,omitempty"` // why no model is loaded
}

// modelEvent is events/model: a model loaded, or one that failed to load (the serving
// model stays).
type modelEvent struct {
	Event   string `json:"event"` // loaded, load_failed
	Version string `json:"version,omitempty"`
	Dir     string `json:"dir,omitempty"`
	Error   string `json:"error,omitempty"`
}

// rejectedEvent is events/rejected: files a folder source refused (corrupt, truncated,
// not an image, too large). At most one per camera per rejectedEvery; Suppressed
// counts the rejections since the last event that got none of their own.
type rejectedEvent struct {
	Camera     string    `json:"camera"`
	File       string    `json:"file"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
	Suppressed int       `json:"suppressed"`
}

// catalogueState is state/catalogue (retained): the defect catalogue in force.
type catalogueState struct {
	File     string    `json:"file"`
	Kinds    []string  `json:"kinds"`
	Prompts  int       `json:"prompts"`
	Digest   string    `json:"digest"`
	LoadedAt time.Time `json:"loaded_at"`
}

// configEvent is events/config: a catalogue edit applied, or rejected with its
// file:line:col problems.
type configEvent struct {
	File         string   `json:"file"`
	OK           bool     `json:"ok"`
	Kinds        []string `json:"kinds,omitempty"`
	Digest       string   `json:"digest,omitempty"`
	Problems     []string `json:"problems,omitempty"`
	KeptLastGood *bool    `json:"kept_last_good,omitempty"` // only when !OK
}

// jobState is state/job (retained): the job running (null when idle) or the last one.
type jobState struct {
	Running  *string     `json:"running"`
	Since    *time.Time  `json:"since,omitempty"`
	Options  *jobOptions `json:"options,omitempty"`
	Last     string      `json:"last,omitempty"`
	Finished *time.Time  `json:"finished,omitempty"`
}

// jobStarted is the result of the augment, retrain and cycle commands.
type jobStarted struct {
	Job     string     `json:"job"`
	Started time.Time  `json:"started"`
	Options jobOptions `json:"options"`
}

// jobStart is a job's first event (phase "start"; for DIAG also "load").
type jobStart struct {
	Job       string `json:"job"`
	Phase     string `json:"phase"`
	N         int    `json:"n,omitempty"`
	Generator string `json:"generator,omitempty"`
	Batch     string `json:"batch,omitempty"`
	Registry  string `json:"registry,omitempty"`
	Model     string `json:"model,omitempty"`
}

// jobProgress is a job's progress within a phase, at most one a second (reporter).
type jobProgress struct {
	Job      string   `json:"job"`
	Phase    string   `json:"phase"`
	Done     int      `json:"done"`
	Total    int      `json:"total"`
	Fraction float64  `json:"fraction"`
	EtaS     *float64 `json:"eta_s,omitempty"`
	// augment
	Written *int   `json:"written,omitempty"`
	Skipped *int   `json:"skipped,omitempty"`
	Kind    string `json:"kind,omitempty"`
	// retrain
	Message string   `json:"message,omitempty"`
	Loss    *float64 `json:"loss,omitempty"`
	Epoch   *int     `json:"epoch,omitempty"`
	Epochs  *int     `json:"epochs,omitempty"`
}

// augmentFinish is the augment job's last event.
type augmentFinish struct {
	Job          string  `json:"job"`
	Phase        string  `json:"phase"`
	Outcome      string  `json:"outcome"`
	ElapsedS     float64 `json:"elapsed_s"`
	Error        string  `json:"error,omitempty"`
	Batch        string  `json:"batch"`
	Generator    string  `json:"generator"`
	Requested    int     `json:"requested"`
	Written      int     `json:"written"`
	Skipped      int     `json:"skipped"`
	Warnings     int     `json:"warnings"`
	Dir          string  `json:"dir,omitempty"`
	ContactSheet string  `json:"contact_sheet,omitempty"`
	Accepted     *bool   `json:"accepted,omitempty"`
}

// retrainFinish is the retrain job's last event.
type retrainFinish struct {
	Job              string   `json:"job"`
	Phase            string   `json:"phase"`
	Outcome          string   `json:"outcome"`
	ElapsedS         float64  `json:"elapsed_s"`
	Error            string   `json:"error,omitempty"`
	Registry         string   `json:"registry"`
	ImportedBase     string   `json:"imported_base,omitempty"`
	Arch             string   `json:"arch,omitempty"` // resnet50 or segdec
	Mode             string   `json:"mode,omitempty"`
	Validation       string   `json:"validation,omitempty"`
	Version          string   `json:"version,omitempty"`
	Promoted         bool     `json:"promoted"`
	Reason           string   `json:"reason,omitempty"`
	CandidateAP      *float64 `json:"candidate_ap,omitempty"`
	ServingAP        *float64 `json:"serving_ap,omitempty"`
	ServingVersion   string   `json:"serving_version,omitempty"`
	Threshold        *float64 `json:"threshold,omitempty"`
	PRCurve          string   `json:"pr_curve,omitempty"`
	TrainImages      int      `json:"train_images,omitempty"`
	ValidationImages int      `json:"validation_images,omitempty"`
	Served           string   `json:"served,omitempty"`
	// The promotion gate's decision (promote, reject, no-decision), the flags that
	// refused the candidate, and AP(candidate) − AP(serving) with its interval.
	Decision    string   `json:"decision,omitempty"`
	Flags       []string `json:"flags,omitempty"`
	APDiff      *float64 `json:"ap_diff,omitempty"`
	APDiffLower *float64 `json:"ap_diff_lower,omitempty"`
	APDiffUpper *float64 `json:"ap_diff_upper,omitempty"`
}

// jobFinish is the cycle job's last event, and that of any job that could not run (a
// scheduled cycle skipped) or failed on an internal error.
type jobFinish struct {
	Job       string  `json:"job"`
	Phase     string  `json:"phase"`
	Outcome   string  `json:"outcome"`
	Reason    string  `json:"reason,omitempty"`
	ElapsedS  float64 `json:"elapsed_s"`
	Scheduled bool    `json:"scheduled,omitempty"`
}

// reloadResult is the reload command's result.
type reloadResult struct {
	ModelVersion string `json:"model_version"`
}

// statusResult is the status command's result.
type statusResult struct {
	Ready    bool             `json:"ready"`
	NotReady []string         `json:"notReady"`
	Cameras  []capture.Status `json:"cameras"`
	Model    *string          `json:"model"`
	Outbox   outbox.Stats     `json:"outbox"`
}

// triggerResult is the trigger command's result.
type triggerResult struct {
	Camera string `json:"camera"`
	PartID string `json:"partId"`
	Queued bool   `json:"queued"`
}

// readyz is GET /readyz's body.
type readyz struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons"`
}
