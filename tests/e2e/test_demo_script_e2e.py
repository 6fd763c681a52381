"""`make demo` for real: scripts/demo.sh in a temporary copy of the demo, with the real Pulumi CLI (as the
.pulumi-bin/ that `make pulumi-cli` builds) and a real hvsim lab: `pulumi up` of stack dev, again with no
change, the printed next steps work, and `destroy` leaves no replication behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.demo_tree import DemoTree


def test_make_demo_runs_pulumi_up_of_the_demo_stack(tmp_path: Path, pulumi_cli: Path) -> None:
    tree = DemoTree.create(tmp_path, ("127.110.0.11", "127.110.0.12"))
    if pulumi_cli.parent.name == ".pulumi-bin":
        tree.link_built_cli()
    else:  # a CLI installed on PATH
        (tree.bin_dir / "pulumi").symlink_to(pulumi_cli)
    try:
        first = tree.run()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "+ 13 created" in first.stdout, first.stdout
        assert "The demo stack is up" in first.stdout

        again = tree.run()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "13 unchanged" in again.stdout, again.stdout

        outputs = tree.run("stack", "output", "--json")
        assert outputs.returncode == 0, outputs.stderr
        # The script's own lines (CLI found, hvsim reused, how to stop it) surround the CLI's JSON.
        start = outputs.stdout.index("\n{") + 1
        replication = json.JSONDecoder().raw_decode(outputs.stdout, start)[0]["replication"]
        assert {k: v["state"] for k, v in replication.items()} == dict.fromkeys(
            ("host1.contoso.com/db01", "host1.contoso.com/web01", "host2.fabrikam.com/app02"), "Replicating"
        )
        preview = tree.run("preview", "--expect-no-changes")
        assert preview.returncode == 0, preview.stdout + preview.stderr
        destroy = tree.run("destroy", "--yes")
        assert destroy.returncode == 0, destroy.stdout + destroy.stderr
        assert "- 13 deleted" in destroy.stdout, destroy.stdout
    finally:
        tree.stop_hvsim()
