set terminal pngcairo size 1400,1120 font 'DejaVu Sans,12'
set output '/work/main/bench/log/results/latency_over_time.png'
set multiplot layout 2,1
set logscale xy
set format y '10^{%L}'
set format x '10^{%L}'
set xrange [1e-5:*]
set yrange [0.5:*]
set grid xtics ytics lc rgb '#dddddd'
set xlabel 'time since the log was opened, s (log scale)'
set ylabel 'write latency, µs (log scale)'
set key top left box opaque font ',11'
set label 1 'lines: median of each 13 records; small dots: their maximum (fsyncs); big dot: open + first write, where a copy-up happens' at graph 0.01, graph -0.17 font ',10'
set bmargin 5
set title 'appending 4 MiB in 200-byte records to a 64 MiB log, no fsync' font ',14'
plot '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::1 using 1:3 with points lc rgb '#d62728' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#d62728' lw 2.5 title 'unionfs-cpp: lower log (copy-up): pause 339 ms, p50 61 µs', \
     '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#d62728' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::1 using 1:3 with points lc rgb '#9467bd' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#9467bd' lw 2.5 title 'kernel ovl: lower log (copy-up): pause 247 ms, p50 2 µs', \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#9467bd' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::1 using 1:3 with points lc rgb '#ff7f0e' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#ff7f0e' lw 2.5 title 'unionfs-cpp: new log: pause 1.28 ms, p50 161.1 µs', \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#ff7f0e' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::1 using 1:3 with points lc rgb '#2ca02c' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#2ca02c' lw 2.5 title 'volume (host dir): pause 0.05 ms, p50 1.4 µs', \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#2ca02c' pt 7 ps 2.5 notitle
set title 'appending 4 MiB in 200-byte records to a 64 MiB log, fdatasync every 100 records' font ',14'
plot '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::1 using 1:3 with points lc rgb '#d62728' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#d62728' lw 2.5 title 'unionfs-cpp: lower log (copy-up): pause 153 ms, p50 137 µs', \
     '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#d62728' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::1 using 1:3 with points lc rgb '#9467bd' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#9467bd' lw 2.5 title 'kernel ovl: lower log (copy-up): pause 247 ms, p50 2 µs', \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#9467bd' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::1 using 1:3 with points lc rgb '#ff7f0e' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#ff7f0e' lw 2.5 title 'unionfs-cpp: new log: pause 1.51 ms, p50 185.5 µs', \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#ff7f0e' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::1 using 1:3 with points lc rgb '#2ca02c' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#2ca02c' lw 2.5 title 'volume (host dir): pause 0.07 ms, p50 1.9 µs', \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#2ca02c' pt 7 ps 2.5 notitle
unset multiplot
