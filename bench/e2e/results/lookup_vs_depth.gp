
set terminal pngcairo size 1500,760 noenhanced font 'DejaVu Sans,11'
set output '/work/main/bench/e2e/results/lookup_vs_depth.png'
set multiplot layout 1,2 title "Cold lookup latency vs layer depth (fresh mount, lower dentries cached; median of 3; solid = pinned to CPU 0, dashed = unpinned)" font ',14'
set logscale xy
set xrange [0.8:1600.0]
set yrange [0.97065:420874.99600000004]
set xlabel 'lower layers (depth)'
set ylabel 'µs per lstat (log scale)'
set xtics (1, 4, 16, 64, 256, 1000)
set grid xtics ytics mytics lc rgb '#dddddd'
set key inside top left vertical maxrows 5 font ',10' spacing 1.05 width 1 box opaque
set bmargin 5
set label 1 "unionfs-cpp 6a8d516, Release; kernel overlayfs stops at 500 lower layers; 6.18.44-fc-v782, 2 CPUs; names per point: see RESULTS.md" at screen 0.5, screen 0.015 center font ',9' 
set title 'present names (only in the bottom layer)'
plot 'hit-pinned-native.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#000000' title 'native (pinned)', 'hit-pinned-kernel-ovl.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#1f77b4' title 'kernel-ovl (pinned)', 'hit-pinned-fuse-overlayfs.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#ff7f0e' title 'fuse-overlayfs (pinned)', 'hit-pinned-unionfs-fuse.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#2ca02c' title 'unionfs-fuse (pinned)', 'hit-pinned-unionfs-cpp.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#d62728' title 'unionfs-cpp (pinned)', 'hit-unpinned-native.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#000000' title 'native (unpinned)', 'hit-unpinned-kernel-ovl.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#1f77b4' title 'kernel-ovl (unpinned)', 'hit-unpinned-fuse-overlayfs.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#ff7f0e' title 'fuse-overlayfs (unpinned)', 'hit-unpinned-unionfs-fuse.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#2ca02c' title 'unionfs-fuse (unpinned)', 'hit-unpinned-unionfs-cpp.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#d62728' title 'unionfs-cpp (unpinned)'
set title 'missing names (in no layer)'
plot 'miss-pinned-native.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#000000' title 'native (pinned)', 'miss-pinned-kernel-ovl.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#1f77b4' title 'kernel-ovl (pinned)', 'miss-pinned-fuse-overlayfs.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#ff7f0e' title 'fuse-overlayfs (pinned)', 'miss-pinned-unionfs-fuse.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#2ca02c' title 'unionfs-fuse (pinned)', 'miss-pinned-unionfs-cpp.dat' using 1:2 with linespoints lw 2 dt 1 pt 7 ps 1.1 lc rgb '#d62728' title 'unionfs-cpp (pinned)', 'miss-unpinned-native.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#000000' title 'native (unpinned)', 'miss-unpinned-kernel-ovl.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#1f77b4' title 'kernel-ovl (unpinned)', 'miss-unpinned-fuse-overlayfs.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#ff7f0e' title 'fuse-overlayfs (unpinned)', 'miss-unpinned-unionfs-fuse.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#2ca02c' title 'unionfs-fuse (unpinned)', 'miss-unpinned-unionfs-cpp.dat' using 1:2 with linespoints lw 2 dt 2 pt 6 ps 1.1 lc rgb '#d62728' title 'unionfs-cpp (unpinned)'
unset multiplot
