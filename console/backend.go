// Package console is diagd's web page for the people at the line: live verdicts per
// camera, the failed frames to label, synthetic defects to review, the defect catalogue
// to edit, and the model registry and jobs. It serves files embedded in the binary
// (plain HTML, CSS and JavaScript; no build step) and talks to the daemon only through
// Backend, which the daemon implements (daemon/console.go) mostly by embedding the
// file-backed parts this package provides: Hub, FailRing, Review, CatalogueFile and
// ModelRegistry. Every file the console reads or writes is named by an id the server made and
// opened beneath a fixed folder (os.Root), never by a path from the browser.
package console

import (
	"context"
	"time"
)

// Backend is everything the console needs from the daemon.
type Backend interface {
	Live
	FailStore
	ReviewStore
	CatalogueStore
	ModelStore
	JobRunner
}

// Live is the station's state now and the stream of verdicts.
type Live interface {
	// Status is the station at this moment: cameras, model, readiness.
	Status() Status
	// SubscribeVerdicts streams verdicts (and new latest frames) until ctx ends. While
	// nobody subscribes, the daemon's judge loop does no console work at all.
	SubscribeVerdicts(ctx context.Context) <-chan Event
	// LatestFrame is the newest frame kept for a camera (JPEG), if any.
	LatestFrame(camera string) (Frame, bool)
}

// FailStore is the ring of failed frames kept on disk, and their labelling.
type FailStore interface {
	Fails() []Fail
	// FailImage opens a kept frame's PNG.
	FailImage(id string) (File, error)
	// LabelFail files a failed frame into the labelled data: good (a false alarm) or
	// a confirmed defect with an optional mask (PNG, the frame's size).
	LabelFail(id string, l Labelling) (Fail, error)
}

// ReviewStore is the synthetic batches waiting for review (DIAGD_AUTO_ACCEPT=false).
type ReviewStore interface {
	PendingBatches() ([]Batch, error)
	// ReviewFile opens one file of a pending image: "image", "mask" or "source".
	ReviewFile(batch, image, which string) (File, error)
	// Decide accepts or rejects images of a batch (all of them when images is empty).
	Decide(batch string, images []string, accept bool) (Decision, error)
}

// CatalogueStore reads, checks and saves the defect catalogue.
type CatalogueStore interface {
	Catalogue() (CatalogueDoc, error)
	// SaveCatalogue applies an edit and writes the file atomically if it validates and
	// the file on disk is still the one the edit was made on (ErrConflict otherwise);
	// a *catalogue.ValidationError when invalid, with nothing written.
	SaveCatalogue(e CatalogueEdit) (CatalogueDoc, error)
	// CatalogueMask opens a mask the catalogue names (by kind and index).
	CatalogueMask(kind, index int) (File, error)
	// AddMask stores an uploaded or painted mask and returns the path to name in the
	// catalogue.
	AddMask(kind string, png []byte) (string, error)
	GoodFrames() ([]GoodFrame, error)
	GoodFrame(id string) (File, error)
	// CatalogueInForce is what the daemon loaded (it reloads the file on edit).
	CatalogueInForce() CatalogueState
}

// ModelStore is the model registry.
type ModelStore interface {
	Models() (ModelList, error)
	PRCurve(version string) (File, error)
	Promote(version, by string) error
	Rollback(by string) error
}

// JobRunner runs the daemon's generation and retraining jobs.
type JobRunner interface {
	StartJob(req JobRequest) (JobState, error)
	CancelJob() error
	Job() JobState
}

// File is an open file handed to the browser; the handler closes it.
type File struct {
	Name    string // for the content type
	ModTime time.Time
	Content interface {
		Read(p []byte) (int, error)
		Seek(offset int64, whence int) (int64, error)
		Close() error
	}
}

// Status is the station at one moment.
type Status struct {
	Station  string   `json:"station"`
	Ready    bool     `json:"ready"`
	NotReady []string `json:"notReady"`
	Model    string   `json:"model"` // serving version, "" when none
	Cameras  []Camera `json:"cameras"`
	Job      JobState `json:"job"`
}

// Camera is one source's state.
type Camera struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // online, offline, reconnecting, starting, stopped
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason,omitempty"`
	FPS       float64   `json:"fps"`
	Frames    uint64    `json:"frames"`
	Dropped   uint64    `json:"dropped"`
	LastError string    `json:"lastError,omitempty"`
}

// Verdict is one judged frame as the console shows it.
type Verdict struct {
	Camera       string    `json:"camera"`
	Time         time.Time `json:"time"`
	Verdict      string    `json:"verdict"` // pass, fail, unknown
	Score        float64   `json:"score"`
	Threshold    float64   `json:"threshold"`
	ModelVersion string    `json:"modelVersion"`
	PartID       string    `json:"partId,omitempty"`
	FrameID      string    `json:"frameId,omitempty"`
	LatencyMs    float64   `json:"latencyMs"`
	Error        string    `json:"error,omitempty"`
}

// Point is a pixel position in a frame.
type Point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

// Frame is a camera's latest kept frame.
type Frame struct {
	ID      uint64    `json:"id"` // increases per camera
	Verdict Verdict   `json:"verdict"`
	Width   int       `json:"width"` // of the JPEG
	Height  int       `json:"height"`
	Outline [][]Point `json:"outline,omitempty"` // defect outline in JPEG pixels, when the model segments
	JPEG    []byte    `json:"-"`
}

// Event is one message of the verdict stream: a verdict, or a new latest frame.
type Event struct {
	Verdict *Verdict    `json:"verdict,omitempty"`
	Frame   *FrameEvent `json:"frame,omitempty"`
}

// FrameEvent says a camera has a new latest frame to fetch.
type FrameEvent struct {
	Camera  string    `json:"camera"`
	ID      uint64    `json:"id"`
	Verdict Verdict   `json:"verdict"`
	Width   int       `json:"width"`
	Height  int       `json:"height"`
	Outline [][]Point `json:"outline,omitempty"`
}

// Label is what a person says a failed frame is.
type Label string

// Labels.
const (
	LabelGood   Label = "good"   // the detector was wrong: a good part
	LabelDefect Label = "defect" // a real defect
)

// Labelling is a person's decision on a failed frame.
type Labelling struct {
	Label Label
	Mask  []byte // PNG, optional, only with LabelDefect
	By    string
}

// Fail is one kept failed frame.
type Fail struct {
	ID           string    `json:"id"`
	Camera       string    `json:"camera"`
	Time         time.Time `json:"time"`
	Score        float64   `json:"score"`
	Threshold    float64   `json:"threshold"`
	ModelVersion string    `json:"modelVersion"`
	PartID       string    `json:"partId,omitempty"`
	FrameID      string    `json:"frameId,omitempty"`
	Width        int       `json:"width"`
	Height       int       `json:"height"`
	Label        Label     `json:"label,omitempty"`
	LabelledBy   string    `json:"labelledBy,omitempty"`
	LabelledAt   time.Time `json:"labelledAt,omitzero"`
	// Filed are the labelled copies, relative to DATA_DIR (e.g. defects/<id>.png).
	Filed []string `json:"filed,omitempty"`
}

// Batch is one pending synthetic batch.
type Batch struct {
	ID     string        `json:"id"`
	Total  int           `json:"total"`  // images in the batch
	Images []ReviewImage `json:"images"` // the first of them (200 at most)
}

// ReviewImage is one generated image waiting for review.
type ReviewImage struct {
	ID         string `json:"id"` // NNNNN
	Kind       string `json:"kind,omitempty"`
	Prompt     string `json:"prompt,omitempty"`
	HasMask    bool   `json:"hasMask"`
	HasSource  bool   `json:"hasSource"`
	SourceName string `json:"sourceName,omitempty"`
}

// Decision is what a review did.
type Decision struct {
	Batch    string   `json:"batch"`
	Accepted []string `json:"accepted,omitempty"`
	Rejected []string `json:"rejected,omitempty"`
	Failed   []string `json:"failed,omitempty"` // "NNNNN: why"
}

// CatalogueDoc is the catalogue as the page edits it.
type CatalogueDoc struct {
	File   string `json:"file"`
	Hash   string `json:"hash"` // sha256 of the file's bytes: an edit names the version it was made on
	Text   string `json:"text"`
	Kinds  []Kind `json:"kinds"`
	Global struct {
		NegativePrompt string `json:"negativePrompt"`
	} `json:"global"`
	// Problems are the file's own problems when it does not validate (file:line:col).
	Problems []string       `json:"problems,omitempty"`
	Digest   string         `json:"digest,omitempty"` // the catalogue's digest when valid, as the daemon reports it once loaded
	InForce  CatalogueState `json:"inForce"`
}

// Kind is one defect kind in the editor.
type Kind struct {
	Index          int        `json:"index"` // position in the file; -1 for a new kind
	Name           string     `json:"name"`
	Prompts        []string   `json:"prompts"`
	NegativePrompt string     `json:"negativePrompt"` // the kind's own; "" uses the global one
	Weight         float64    `json:"weight"`
	Masks          []MaskRef  `json:"masks"`
	Regions        []string   `json:"regions,omitempty"` // shown, not edited
	Line           int        `json:"line,omitempty"`
	Problems       []string   `json:"problems,omitempty"`
	Extra          []KeyValue `json:"extra,omitempty"` // other keys of the kind, kept as they are
	maskLines      []int      // the line of each masks entry, to match resolved files
}

// MaskRef is one entry of a kind's masks list.
type MaskRef struct {
	Path  string `json:"path"`  // as written in the file
	Files int    `json:"files"` // image files it resolves to (a folder or glob may give several)
	First int    `json:"first"` // CatalogueMask index of its first file; -1 when none
}

// KeyValue is a key and its value as text.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// CatalogueEdit is the kinds as the page wants them, and the version they were
// edited from.
type CatalogueEdit struct {
	Hash  string     `json:"hash"`
	Kinds []KindEdit `json:"kinds"`
}

// KindEdit is one kind as it should be; Index says which kind of the file it was
// (-1: a new kind). Kinds of the file that no edit names are removed.
type KindEdit struct {
	Index          int      `json:"index"`
	Name           string   `json:"name"`
	Prompts        []string `json:"prompts"`
	NegativePrompt string   `json:"negativePrompt"`
	Weight         float64  `json:"weight"`
	Masks          []string `json:"masks"`
}

// CatalogueState is the catalogue the daemon has in force.
type CatalogueState struct {
	Digest  string `json:"digest,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// GoodFrame is a pooled good frame to paint a mask on.
type GoodFrame struct {
	ID     string `json:"id"`
	Camera string `json:"camera"`
}

// ModelList is the registry.
type ModelList struct {
	Registry  string        `json:"registry"`
	Versions  []ModelInfo   `json:"versions"`
	Problems  []string      `json:"problems,omitempty"`
	Decisions []DecisionLog `json:"decisions"`
}

// ModelInfo is one version.
type ModelInfo struct {
	Version       string     `json:"version"`
	ModelVersion  string     `json:"modelVersion"` // model.json's model_version
	Current       bool       `json:"current"`
	Previous      bool       `json:"previous"`
	Created       time.Time  `json:"created,omitzero"`
	AP            *float64   `json:"ap,omitempty"`
	AUROC         *float64   `json:"auroc,omitempty"`
	F1            *float64   `json:"f1,omitempty"`
	ValImages     int        `json:"valImages,omitempty"`
	Threshold     float64    `json:"threshold"`
	ThresholdRule string     `json:"thresholdRule,omitempty"`
	Recipe        []KeyValue `json:"recipe,omitempty"`
	HasPRCurve    bool       `json:"hasPRCurve"`
	Problem       string     `json:"problem,omitempty"`
}

// DecisionLog is one line of the registry's decision log.
type DecisionLog struct {
	Time        time.Time `json:"time"`
	Action      string    `json:"action"`
	Candidate   string    `json:"candidate,omitempty"`
	Serving     string    `json:"serving,omitempty"`
	CandidateAP *float64  `json:"candidateAp,omitempty"`
	ServingAP   *float64  `json:"servingAp,omitempty"`
	Reason      string    `json:"reason"`
}

// JobRequest starts a job.
type JobRequest struct {
	Kind      string `json:"kind"` // augment, retrain, cycle
	N         int    `json:"n,omitempty"`
	Generator string `json:"generator,omitempty"`
}

// JobState is the job running now, or the last one.
type JobState struct {
	Running  string    `json:"running,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Fraction float64   `json:"fraction"` // of the current phase
	Last     string    `json:"last,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}
