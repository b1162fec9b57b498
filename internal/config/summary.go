package config

import (
	"regexp"
)

// Summary is the configuration as logged at start and published retained on
// state/config: no secrets (no password; URLs in sources redacted), nothing a
// subscriber cannot already know from the topics.
type Summary struct {
	Station          string  `json:"station"`
	Sources          string  `json:"sources"`
	DataDir          string  `json:"dataDir"`
	ModelDir         string  `json:"modelDir"`
	Provider         string  `json:"provider"`
	TRTFP16          bool    `json:"trtFP16"`
	BatchMax         int     `json:"batchMax"`
	MQTTBroker       string  `json:"mqttBroker"`
	MQTTPrefix       string  `json:"mqttPrefix"`
	MQTTTLS          bool    `json:"mqttTLS"`
	MQTTAuth         bool    `json:"mqttAuth"`
	OutboxMaxBytes   int64   `json:"outboxMaxBytes"`
	OutboxMaxRecords int     `json:"outboxMaxRecords"`
	HTTPAddr         string  `json:"httpAddr"`
	Demo             bool    `json:"demo"`
	Catalogue        string  `json:"catalogue"`
	Generator        string  `json:"generator"`
	AugmentN         int     `json:"augmentN"`
	RetrainEvery     string  `json:"retrainEvery"`
	AutoAccept       bool    `json:"autoAccept"`
	Registry         string  `json:"registry"`
	RetrainMode      string  `json:"retrainMode"`
	PromoteTolerance float64 `json:"promoteTolerance"`
	Trainable        string  `json:"trainable"`
	TrainBudget      string  `json:"trainBudget"`
}

// Summary returns the redacted configuration summary.
func (c Config) Summary() Summary {
	return Summary{
		Station: c.Station, Sources: Redact(c.Sources), DataDir: c.DataDir, ModelDir: c.ModelDir,
		Provider: c.Provider, TRTFP16: c.TRTFP16, BatchMax: c.BatchMax, MQTTBroker: Redact(c.MQTTBroker), MQTTPrefix: c.MQTTPrefix,
		MQTTTLS:        c.MQTTCAFile != "" || c.MQTTCertFile != "" || brokerSchemes[schemeOf(c.MQTTBroker)],
		MQTTAuth:       c.MQTTUsername != "",
		OutboxMaxBytes: c.OutboxMaxBytes, OutboxMaxRecords: c.OutboxMaxRecords, HTTPAddr: c.HTTPAddr, Demo: c.Demo,
		Catalogue: c.Catalogue, Generator: c.Generator, AugmentN: c.AugmentN, RetrainEvery: c.RetrainEvery.String(),
		AutoAccept: c.AutoAccept, Registry: c.Registry, RetrainMode: c.RetrainMode, PromoteTolerance: c.PromoteTolerance,
		Trainable: c.Trainable, TrainBudget: c.TrainBudget.String(),
	}
}

// RedactedPassword replaces a password wherever diagd prints or publishes a URL.
const RedactedPassword = "xxxxx"

// urlPassword matches the password of a URL's user info (scheme://user:PASSWORD@host).
// The password runs to the last '@' before the path, so one with an unescaped '@' in it
// is hidden whole; a ';' or ',' ends a source entry or option (DIAGD_SOURCES).
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s;,]*):[^\s;,/]*@`)

// Redact hides the passwords of every URL in s (a broker URL, camera URLs in
// DIAGD_SOURCES, or an error message quoting them).
func Redact(s string) string {
	return urlPassword.ReplaceAllString(s, "${1}:"+RedactedPassword+"@")
}

func schemeOf(u string) string {
	for i := 0; i < len(u); i++ {
		if u[i] == ':' {
			return u[:i]
		}
	}
	return ""
}
