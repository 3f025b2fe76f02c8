"""Garbage collection: drop the versions nobody keeps, then delete what no retained version reaches.

    plan = plan_gc(zoo, keep=["yolo@^2"], keep_locks=["old/zoo.lock", "new/zoo.lock"])
    print(plan)                    # versions dropped; recipes, packs and bytes to delete
    result = plan.execute(progress)

Roots and reachability (the store layout is drawn in zoostore.repository):

    manifests/<model>.toml   retained versions ──files──▶ blob ids
    blobs/<aa>/<blob id>     a recipe is kept if a retained version lists it, or if it is younger
                             than the cutoff (a publisher may be about to list it)
    packs/<aa>/<pack id>     a pack is kept if a kept recipe names it, or if it is younger than
                             the cutoff (a publisher may be about to write a recipe naming it)

Retention: without `keep` rules every version stays. A `KeepRule` (`MODEL@RANGE`, `MODEL@TAG`
or bare `MODEL`) and a lockfile's pins narrow only the models they name: for such a model the
versions a rule matches, a lockfile pins, or a tag (explicit, or the implicit `latest`) points at
stay, and the others are dropped from its manifest with compare-and-swap.

Order of a run (the safety argument is in docs/gc.md):
1. `plan_gc` reads the store clock once (`Backend.now`): cutoff = now - grace. It reads every
   manifest, decides the drops, and surveys the store as it would be after them: lists packs/,
   then blobs/, reads every kept recipe. Nothing is changed.
2. `GcPlan.execute` drops the versions (CAS, re-applied to the current manifest, so a tag moved
   meanwhile still protects its version), re-reads every manifest, and, if they now reference a
   blob the plan's did not (or with repack), re-lists packs/ and blobs/ and reads recipes it
   has not seen; otherwise it acts on the plan's listings. It deletes only objects that the plan listed and that are
   still unreferenced and older than the cutoff. Right before each delete request it looks at the
   candidates again (a stat each, or a listing page when that takes fewer requests: `deletes`)
   and sends the request within the store's settle time of that look; a publisher
   that freshened an old object re-checks it the store's settle time later (zoostore.storage.handshake), so a
   delete that raced a freshen is seen before any manifest names the object. Recipes go before
   packs, so a visible recipe's packs exist.
3. `repack` rewrites old packs whose live fraction is below the threshold: live frames are
   copied (each verified) into new packs whose footers carry the file lists of the recipes they
   serve, the old packs are freshened (so they outlive readers holding old recipes by the grace
   period) and the recipes are overwritten to name the new packs. A later run deletes the old
   packs once they are unreferenced and older than the cutoff.

One module per job: `retention` (keep rules, lockfile pins, tags), `survey` (what exists and
what is referenced), `plan` (GcPlan, plan_gc, execute), `repack`, `results` (plain values),
`leftovers` (temp files, broken locks and probes of killed writers: deleted first in execute),
`deletes` (the re-check right before each delete request), `recipe_cache` (what an earlier run
on this machine read).
"""

from zoostore.ops.gc.deletes import DELETE_BATCH
from zoostore.ops.gc.plan import REPACK_THRESHOLD, GcPlan, plan_gc
from zoostore.ops.gc.results import DroppedVersion, GcResult, RepackItem
from zoostore.ops.gc.retention import KeepRule, pinned_blobs, pinned_versions, read_lock

__all__ = ["DELETE_BATCH", "REPACK_THRESHOLD", "DroppedVersion", "GcPlan", "GcResult", "KeepRule",
           "RepackItem", "pinned_blobs", "pinned_versions", "plan_gc", "read_lock"]
