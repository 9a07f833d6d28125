#!/usr/bin/env bash
# Real tools on a mount: cp -a in and out, tar -x / tar -c, a git workflow on a repository that
# lives in a lower layer, and editor-style saves. The lower layers must not change.
source "$(dirname "$0")/lib.sh" "$@"

# A source tree with the things tools care about: modes, symlinks, empty dirs, mtimes, xattrs.
SRC="$T/src"
mkdir -p "$SRC"/{bin,etc/conf.d,empty,deep/a/b/c}
printf '#!/bin/sh\necho hi\n' >"$SRC/bin/run" && chmod 0755 "$SRC/bin/run"
echo secret >"$SRC/etc/secret" && chmod 0600 "$SRC/etc/secret"
echo conf >"$SRC/etc/conf.d/a.conf"
head -c 300000 /dev/urandom >"$SRC/deep/a/b/c/blob"
: >"$SRC/emptyfile"
ln -s ../etc/secret "$SRC/bin/link_rel"
ln -s /nonexistent/target "$SRC/dangling"
ln "$SRC/etc/conf.d/a.conf" "$SRC/etc/hardlink.conf"
chmod 0700 "$SRC/deep/a"
chmod 1777 "$SRC/empty"
setfattr -n user.note -v hello "$SRC/etc/secret"
find "$SRC" -exec touch -h -d '2020-01-02 03:04:05.123456789' {} +

tree_meta() { # DIR: what cp -a / tar must preserve (not ctime, not inode numbers)
  (cd "$1" && find . -printf '%p %y %m %U:%G %s %T@ %l\n' | LC_ALL=C sort)
}

new_stack tools 2
mkdir -p "${L[0]}/existing/dir" "${L[1]}/existing"
echo low >"${L[0]}/existing/dir/keep"
echo low2 >"${L[1]}/existing/top"
printf 'line 1\nline 2\n' >"${L[0]}/doc.txt"
chmod 0640 "${L[0]}/doc.txt"
printf 'vim style\n' >"${L[0]}/vim.txt"

# A git repository in the bottom layer: the mount must let us work on it as if it were ours.
git init -q -b main "${L[0]}/repo"
(
  cd "${L[0]}/repo"
  git config user.email t@example.com && git config user.name tester
  echo one >a.txt && mkdir -p sub && echo two >sub/b.txt
  git add -A && git commit -q -m first
  echo three >>a.txt && git commit -q -am second
)
save_lowers
mount_union "$(stack_spec)" "$M"

check "cp -a of a tree into the mount preserves content, modes, links, times"
cp -a "$SRC" "$M/copy"
diff -r --no-dereference "$SRC" "$M/copy" >"$T/d1" 2>&1 || fail "diff -r src mount: $(head -20 "$T/d1")"
diff <(tree_meta "$SRC") <(tree_meta "$M/copy") >"$T/d2" || fail "metadata differs in the mount: $(head -20 "$T/d2")"
expect_eq "$(getfattr --absolute-names --only-values -n user.note "$M/copy/etc/secret" 2>&1)" hello "user xattr through cp -a"
expect_eq "$(stat -c %h "$M/copy/etc/hardlink.conf")" 2 "hard link count after cp -a"
expect_eq "$(stat -c %i "$M/copy/etc/hardlink.conf")" "$(stat -c %i "$M/copy/etc/conf.d/a.conf")" "hard link inode"

check "cp -a of the tree out of the mount again gives the same tree"
cp -a "$M/copy" "$T/back"
diff -r --no-dereference "$SRC" "$T/back" >"$T/d3" 2>&1 || fail "diff -r src back: $(head -20 "$T/d3")"
diff <(tree_meta "$SRC") <(tree_meta "$T/back") >"$T/d4" || fail "metadata differs after the round trip: $(head -20 "$T/d4")"

check "cp -a into a lower dir merges with it"
cp -a "$SRC/etc" "$M/existing/dir/"
expect_listing "$M/existing/dir" "etc keep" "merged lower dir after cp"
expect_listing "$M/existing" "dir top" "parent of the copy"
diff -r "$SRC/etc" "$M/existing/dir/etc" >/dev/null || fail "copied etc differs"

check "tar -x into the mount and tar -c back out"
tar -C "$SRC" --xattrs -cf "$T/src.tar" .
mkdir "$M/untar"
tar -C "$M/untar" --xattrs -xf "$T/src.tar" || fail "tar -x into the mount failed"
tar -C "$M/untar" --xattrs -cf "$T/back.tar" . || fail "tar -c from the mount failed"
mkdir "$T/untar2"
tar -C "$T/untar2" --xattrs -xf "$T/back.tar"
diff -r --no-dereference "$SRC" "$T/untar2" >"$T/d5" 2>&1 || fail "tar round trip differs: $(head -20 "$T/d5")"
diff <(tree_meta "$SRC") <(tree_meta "$T/untar2") >"$T/d6" || fail "tar round trip metadata: $(head -20 "$T/d6")"
expect_eq "$(tar -tvf "$T/src.tar" | awk '{print $1, $2, $3, $6}' | sort)" \
  "$(tar -tvf "$T/back.tar" | awk '{print $1, $2, $3, $6}' | sort)" "tar listings (mode owner size name)"

check "git: status clean, commit, branch, checkout on a repo from a lower layer"
(
  cd "$M/repo"
  export GIT_CONFIG_NOSYSTEM=1 HOME="$T"
  git config --global --add safe.directory '*'
  st=$(git status --porcelain) && [[ -z $st ]] || { echo "status not clean on a fresh mount: $st"; exit 1; }
  git log --oneline | wc -l | grep -qx 2 || { echo "log does not have 2 commits"; exit 1; }
  echo four >>a.txt
  mkdir -p new && echo n >new/n.txt
  git add -A && git commit -q -m third
  git branch feature
  git checkout -q feature
  echo feat >sub/b.txt && git rm -q a.txt && git commit -q -am feature
  [[ ! -e a.txt ]] || { echo "a.txt still there on feature"; exit 1; }
  git checkout -q main
  [[ $(cat a.txt) == $'one\nthree\nfour' ]] || { echo "a.txt wrong on main: $(cat a.txt)"; exit 1; }
  [[ $(cat sub/b.txt) == two ]] || { echo "sub/b.txt wrong on main"; exit 1; }
  st=$(git status --porcelain) && [[ -z $st ]] || { echo "status not clean after checkout: $st"; exit 1; }
  git fsck --no-progress 2>&1 | grep -v '^Checking' | grep . && { echo "git fsck complained"; exit 1; }
  git gc -q 2>&1 || { echo "git gc failed"; exit 1; }
  git log --oneline main | wc -l | grep -qx 3 || { echo "main does not have 3 commits"; exit 1; }
  git log --oneline feature | wc -l | grep -qx 4 || { echo "feature does not have 4 commits"; exit 1; }
) >"$T/git.log" 2>&1 || fail "git workflow: $(tail -5 "$T/git.log")"

check "git init + commit of a new repo inside the mount"
(
  export GIT_CONFIG_NOSYSTEM=1 HOME="$T"
  git init -q -b main "$M/newrepo" && cd "$M/newrepo"
  cp -a "$SRC/." .
  git add -A && git -c user.email=t@e -c user.name=t commit -q -m init
  st=$(git status --porcelain) && [[ -z $st ]] || { echo "status not clean: $st"; exit 1; }
) >"$T/git2.log" 2>&1 || fail "git new repo: $(tail -5 "$T/git2.log")"

check "editor-style atomic save over a lower file (temp, fsync, rename)"
"$PYTHON" - "$M" <<'EOF' || fail "atomic save raised"
import os, sys
m = sys.argv[1]
tmp = os.path.join(m, ".doc.txt.tmp")
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
os.write(fd, b"line 1\nline 2 edited\n")
os.fsync(fd)
os.close(fd)
os.rename(tmp, os.path.join(m, "doc.txt"))
dfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
os.close(dfd)
EOF
expect_file "$M/doc.txt" $'line 1\nline 2 edited' "saved file"
expect_absent "$M/.doc.txt.tmp" "temp file after rename"
expect_eq "$(stat -c %a "$M/doc.txt")" 640 "mode of the saved file"
expect_file "${L[0]}/doc.txt" $'line 1\nline 2' "lower original"

check "vim-style save: rename original to backup, write new, delete backup"
mv "$M/vim.txt" "$M/vim.txt~"
printf 'vim style v2\n' >"$M/vim.txt"
expect_file "$M/vim.txt~" 'vim style' "backup"
rm "$M/vim.txt~"
expect_file "$M/vim.txt" 'vim style v2' "new version"
expect_absent "$M/vim.txt~" "backup after rm"

check "sed -i on a lower file"
sed -i 's/line 1/LINE ONE/' "$M/doc.txt"
expect_file "$M/doc.txt" $'LINE ONE\nline 2 edited' "sed -i result"

check "rm -rf of a copied tree and of a lower tree"
rm -rf "$M/copy" "$M/existing"
expect_absent "$M/copy" "copy after rm -rf"
expect_absent "$M/existing" "existing after rm -rf"

unmount_union "$M"
check_lowers

check "the changes persist across a remount"
mount_union "$(stack_spec)" "$M"
expect_file "$M/doc.txt" $'LINE ONE\nline 2 edited' "doc.txt after remount"
expect_absent "$M/existing" "deleted lower tree after remount"
(cd "$M/repo" && HOME="$T" git -c safe.directory='*' status --porcelain) >"$T/st" 2>&1 || fail "git status after remount failed: $(cat "$T/st")"
[[ ! -s $T/st ]] || fail "git status not clean after remount: $(cat "$T/st")"
diff -r --no-dereference "$SRC" "$M/untar" >/dev/null 2>&1 || fail "untarred tree differs after remount"
unmount_union "$M"
check_lowers

finish
