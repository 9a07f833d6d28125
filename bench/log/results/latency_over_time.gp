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
set label 1 'lines: median of each 27 records; small dots: their maximum (fsyncs); big dot: open + first write, where a copy-up happens' at graph 0.01, graph -0.17 font ',10'
set bmargin 5
set title 'appending 8 MiB in 200-byte records to a 1 GiB log, no fsync' font ',14'
plot '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::1 using 1:3 with points lc rgb '#d62728' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#d62728' lw 2.5 title 'unionfs-cpp: lower log (copy-up): pause 3,627 ms, p50 154 µs', \
     '/work/main/bench/log/results/plotdata-lower-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#d62728' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::1 using 1:3 with points lc rgb '#9467bd' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#9467bd' lw 2.5 title 'kernel ovl: lower log (copy-up): pause 5,804 ms, p50 2 µs', \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#9467bd' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::1 using 1:3 with points lc rgb '#ff7f0e' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#ff7f0e' lw 2.5 title 'unionfs-cpp: new log: pause 1.77 ms, p50 109.7 µs', \
     '/work/main/bench/log/results/plotdata-new-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#ff7f0e' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::1 using 1:3 with points lc rgb '#2ca02c' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::1 using 1:2 with lines lc rgb '#2ca02c' lw 2.5 title 'volume (host dir): pause 0.30 ms, p50 1.4 µs', \
     '/work/main/bench/log/results/plotdata-volume-fsync0.dat' every ::0::0 using 1:2 with points lc rgb '#2ca02c' pt 7 ps 2.5 notitle
set title 'appending 8 MiB in 200-byte records to a 1 GiB log, fdatasync every 100 records' font ',14'
plot '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::1 using 1:3 with points lc rgb '#d62728' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#d62728' lw 2.5 title 'unionfs-cpp: lower log (copy-up): pause 1,467 ms, p50 178 µs', \
     '/work/main/bench/log/results/plotdata-lower-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#d62728' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::1 using 1:3 with points lc rgb '#9467bd' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#9467bd' lw 2.5 title 'kernel ovl: lower log (copy-up): pause 3,023 ms, p50 2 µs', \
     '/work/main/bench/log/results/plotdata-kovl-lower-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#9467bd' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::1 using 1:3 with points lc rgb '#ff7f0e' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#ff7f0e' lw 2.5 title 'unionfs-cpp: new log: pause 1.45 ms, p50 186.3 µs', \
     '/work/main/bench/log/results/plotdata-new-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#ff7f0e' pt 7 ps 2.5 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::1 using 1:3 with points lc rgb '#2ca02c' pt 7 ps 0.25 notitle, \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::1 using 1:2 with lines lc rgb '#2ca02c' lw 2.5 title 'volume (host dir): pause 0.34 ms, p50 1.5 µs', \
     '/work/main/bench/log/results/plotdata-volume-fsync100.dat' every ::0::0 using 1:2 with points lc rgb '#2ca02c' pt 7 ps 2.5 notitle
unset multiplot
