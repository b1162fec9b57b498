package augment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diagd/diagd/augment/catalogue"
)

// ListNegativePool lists the images (absolute paths, sorted) of a negatives pool: dir
// itself and its visible subfolders (the daemon keeps one per camera:
// DATA_DIR/negatives/<camera>/). Unlike ListNegatives, an empty or missing pool is not
// an error: the caller decides how many images it needs.
func ListNegativePool(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	var list func(d string, top bool) error
	list = func(d string, top bool) error {
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) && top {
			return nil
		}
		if err != nil {
			return fmt.Errorf("negatives pool: %w", err)
		}
		var subs []string
		for _, e := range ents {
			switch {
			case e.Type().IsRegular() && catalogue.IsImage(e.Name()):
				out = append(out, filepath.Join(d, e.Name()))
			case top && e.IsDir() && !strings.HasPrefix(e.Name(), "."):
				subs = append(subs, filepath.Join(d, e.Name()))
			}
		}
		for _, s := range subs {
			if err := list(s, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := list(dir, true); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}
