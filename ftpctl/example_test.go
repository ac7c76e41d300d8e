package ftpctl_test

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func ExampleReader_ReadReply() {
	backend := strings.NewReader("220-Welcome to Pure-FTPd.\r\n" +
		"220-You are user number 1 of 50 allowed.\r\n" +
		"220 You will be disconnected after 15 minutes of inactivity.\r\n" +
		"227 Entering Passive Mode (0,0,0,0,195,80).\r\n")
	r := ftpctl.NewReader(bufio.NewReader(backend), 0)

	greeting, _ := r.ReadReply()
	fmt.Println(greeting.Code, greeting.Code.Class(), len(greeting.Lines))

	pasv, _ := r.ReadReply()
	addr, _ := ftpctl.ParsePASV(pasv.Text())
	fmt.Println(addr.Port())
	// Output:
	// 220 2 3
	// 50000
}

func ExampleReply_String() {
	pasv := ftpctl.NewReply(ftpctl.CodeEnteringPassive,
		ftpctl.FormatPASV(netip.MustParseAddrPort("203.0.113.10:50000")))
	fmt.Printf("%q\n", pasv.String())

	feat := ftpctl.FeatReply([]string{"AUTH TLS", "PBSZ", "PROT"})
	fmt.Printf("%q\n", feat.String())
	// Output:
	// "227 Entering Passive Mode (203,0,113,10,195,80).\r\n"
	// "211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End\r\n"
}

func ExampleParseCommand() {
	cmd, _ := ftpctl.ParseCommand("pass s3cr3t")
	fmt.Println(cmd.Verb, cmd.Redacted())

	abor, _ := ftpctl.ParseCommand("\xff\xf4\xff\xf2ABOR")
	fmt.Println(abor.Verb)
	// Output:
	// PASS PASS ****
	// ABOR
}
