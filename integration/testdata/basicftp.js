// basicftp.js drives Node's basic-ftp through the proxy for TestMoreClients
// (moreclients_test.go): log in over TLS, upload a local tree into a new
// directory, list it recursively, download it into another local folder.
//
//   node basicftp.js --module DIR/node_modules/basic-ftp --host H --port P \
//       --user U --password PW [--implicit] --dir /remote --src LOCAL --dst LOCAL
//
// basic-ftp's own trace ("> COMMAND", "< reply") goes to stdout, with a
// "### step NAME" line before each step and one "entry TYPE SIZE PATH" line
// per listed file or directory; the exit status is 1 on any error.
"use strict"

const path = require("path")

function parseArgs(argv) {
    const args = {}
    for (let i = 0; i < argv.length; i++) {
        const key = argv[i].replace(/^--/, "")
        if (key === "implicit") {
            args.implicit = true
        } else {
            args[key] = argv[++i]
        }
    }
    return args
}

const args = parseArgs(process.argv.slice(2))
const ftp = require(args.module) // the copy setup.sh installed, not a global one

function step(name) {
    console.log(`### step ${name}`)
}

// listTree lists dir and every directory below it, depth first, printing one
// line per entry with its path relative to root.
async function listTree(client, root, dir) {
    for (const e of await client.list(dir)) {
        const rel = path.posix.relative(root, path.posix.join(dir, e.name))
        console.log(`entry ${e.isDirectory ? "dir" : "file"} ${e.size} ${rel}`)
        if (e.isDirectory) {
            await listTree(client, root, path.posix.join(dir, e.name))
        }
    }
}

async function main() {
    const client = new ftp.Client(30000)
    client.ftp.verbose = true
    try {
        step("login")
        await client.access({
            host: args.host,
            port: Number(args.port),
            user: args.user,
            password: args.password,
            // Explicit: AUTH TLS on the control connection; then PBSZ 0
            // and PROT P. Data connections offer the control connection's
            // TLS session (basic-ftp passes it as `session`).
            secure: args.implicit ? "implicit" : true,
            secureOptions: { rejectUnauthorized: false }, // the proxy's certificate is self-signed
        })
        console.log(`features ${[...(await client.features()).keys()].sort().join(",")}`)
        step("upload")
        await client.ensureDir(args.dir) // MKD, CWD
        await client.uploadFromDir(args.src)
        step("list")
        await listTree(client, args.dir, args.dir)
        step("download")
        await client.downloadToDir(args.dst, args.dir)
        step("quit")
    } finally {
        client.close()
    }
}

main().catch(err => {
    console.log(`FAIL: ${err && err.stack ? err.stack : err}`)
    process.exitCode = 1
})
