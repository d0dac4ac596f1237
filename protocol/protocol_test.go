package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	req, err := NewRequest(MethodSignal, SignalRequest{ID: "init", Signal: 15})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&b, req); err != nil {
		t.Fatal(err)
	}
	var got Request
	if err := ReadFrame(&b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Method != MethodSignal || got.Version != Version {
		t.Errorf("got %+v", got)
	}
}

func TestFrameBounds(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	var v Response
	if err := ReadFrame(bytes.NewReader(hdr[:]), &v); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized frame: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[:], 100)
	if err := ReadFrame(bytes.NewReader(append(hdr[:], "{}"...)), &v); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[:], 3)
	if err := ReadFrame(bytes.NewReader(append(hdr[:], "{x}"...)), &v); err == nil {
		t.Error("garbage frame accepted")
	}
}

func TestReplyDecode(t *testing.T) {
	var w WaitResponse
	if err := Reply(WaitResponse{ExitCode: 42}, nil).Decode("wait", &w); err != nil || w.ExitCode != 42 {
		t.Errorf("decode: %v %+v", err, w)
	}
	err := Reply(nil, errors.New("boom")).Decode("wait", &w)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "boom" {
		t.Errorf("remote error: %v", err)
	}
}
