package config

import (
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// Defaults is the configuration with every setting at its `default` tag, ignoring the
// environment: tests and benchmarks build their configurations in code from it.
// TestDefaultsMatchEnvconfig keeps it equal to what envconfig gives with nothing set.
func Defaults() Config {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		def, ok := t.Field(i).Tag.Lookup("default")
		if !ok {
			continue
		}
		if err := setDefault(v.Field(i), def); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", t.Field(i).Name, err)) // a typo in a tag: a programming error
		}
	}
	return c
}

func setDefault(f reflect.Value, s string) error {
	var err error
	switch {
	case f.Type() == reflect.TypeFor[time.Duration]():
		var d time.Duration
		d, err = time.ParseDuration(s)
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Bool:
		var b bool
		b, err = strconv.ParseBool(s)
		f.SetBool(b)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		var n int64
		n, err = strconv.ParseInt(s, 10, 64)
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		var x float64
		x, err = strconv.ParseFloat(s, 64)
		f.SetFloat(x)
	default:
		err = fmt.Errorf("unsupported kind %s", f.Kind())
	}
	return err
}
