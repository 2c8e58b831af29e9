// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxMsgpackDepth bounds nesting; real configurations nest a few levels.
const maxMsgpackDepth = 256

// checkMsgpack verifies that raw holds exactly one well-formed msgpack value
// whose declared lengths fit in the input, before go-cty sees it: go-cty
// allocates what a header declares, so a five-byte array32 header claiming
// two billion elements would otherwise exhaust memory.
func checkMsgpack(raw []byte) error {
	rest, err := skipMsgpack(raw, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes after the value", len(rest))
	}
	return nil
}

var errTruncated = errors.New("truncated input")

// skipMsgpack returns the input after the first value.
func skipMsgpack(b []byte, depth int) ([]byte, error) {
	if depth > maxMsgpackDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxMsgpackDepth)
	}
	if len(b) == 0 {
		return nil, errTruncated
	}
	c, b := b[0], b[1:]
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return b, nil
	case c >= 0x80 && c <= 0x8f:
		return skipElems(b, 2*int(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return skipElems(b, int(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		return skipBytes(b, int(c&0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		n, b, err := readLen(b, 1)
		if err != nil {
			return nil, err
		}
		return skipBytes(b, n)
	case 0xc5, 0xda: // bin16, str16
		n, b, err := readLen(b, 2)
		if err != nil {
			return nil, err
		}
		return skipBytes(b, n)
	case 0xc6, 0xdb: // bin32, str32
		n, b, err := readLen(b, 4)
		if err != nil {
			return nil, err
		}
		return skipBytes(b, n)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type, data
		n, b, err := readLen(b, 1<<(c-0xc7))
		if err != nil {
			return nil, err
		}
		return skipBytes(b, n+1)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skipBytes(b, 4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return skipBytes(b, 8)
	case 0xcc, 0xd0: // uint8, int8
		return skipBytes(b, 1)
	case 0xcd, 0xd1: // uint16, int16
		return skipBytes(b, 2)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16, plus the type byte
		return skipBytes(b, 1+1<<(c-0xd4))
	case 0xdc, 0xdd: // array16/32
		n, b, err := readLen(b, 2<<(c-0xdc))
		if err != nil {
			return nil, err
		}
		return skipElems(b, n, depth)
	case 0xde, 0xdf: // map16/32
		n, b, err := readLen(b, 2<<(c-0xde))
		if err != nil {
			return nil, err
		}
		return skipElems(b, 2*n, depth)
	default: // 0xc1 is never used
		return nil, fmt.Errorf("invalid type code 0x%02x", c)
	}
}

func readLen(b []byte, size int) (int, []byte, error) {
	if len(b) < size {
		return 0, nil, errTruncated
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b))
	default:
		n = uint64(binary.BigEndian.Uint32(b))
	}
	rest := b[size:]
	if n > uint64(len(rest)) {
		// Every element and every byte needs at least one input byte.
		return 0, nil, errTruncated
	}
	return int(n), rest, nil
}

func skipBytes(b []byte, n int) ([]byte, error) {
	if n > len(b) {
		return nil, errTruncated
	}
	return b[n:], nil
}

func skipElems(b []byte, n, depth int) ([]byte, error) {
	if n > len(b) {
		return nil, errTruncated
	}
	var err error
	for range n {
		if b, err = skipMsgpack(b, depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}
