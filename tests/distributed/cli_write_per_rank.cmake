# Per-rank writing: `mpirun -np P gigareg register ...` for P = 1..4 on the CPU, every process
# writing its own planes of the warp, inverse warp and warped image (and sampling its planes for
# the QC picture), against the same command in one process: byte-identical .nii, .nii.gz and .png files, gzip -t passes, and the peak resident
# memory of rank 0 at P = 4 is at most a third of the single process's (the processes report it
# with GIGAREG_REPORT_PEAK_MEMORY=1).
#   cmake -DMPIEXEC=... -DNP_FLAG=-n "-DMPI_FLAGS=..." -DCLI=.../gigareg -DDATA=.../shared/data
#         -DWORK=dir -P cli_write_per_rank.cmake
foreach(v MPIEXEC NP_FLAG CLI DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
set(big_fixed "${DATA}/brain_labelled/cfmi_sub-01_brainmask.nii.gz")
set(big_moving "${DATA}/brain_labelled/cfmi_sub-02_brainmask.nii.gz")
set(small_fixed "${DATA}/templates/fsl_MNI152_T1_2mm.nii.gz")
set(small_moving "${DATA}/templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
foreach(f big_fixed big_moving small_fixed small_moving)
  if(NOT EXISTS "${${f}}")
    message("gigareg-test-skipped: real data not found: ${${f}}")
    return()
  endif()
endforeach()
find_program(GZIP gzip)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# Runs the command in one process (np 0) or under mpirun; sets peak_kb to rank 0's peak.
function(run_case np dir args)
  if(np EQUAL 0)
    set(cmd ${CMAKE_COMMAND} -E env GIGAREG_DISTRIBUTED=0 OMP_NUM_THREADS=2 GIGAREG_REPORT_PEAK_MEMORY=1
            ${CLI} ${args})
  else()
    set(cmd ${MPIEXEC} ${NP_FLAG} ${np} ${MPI_FLAGS} -x OMP_NUM_THREADS=1 -x GIGAREG_REPORT_PEAK_MEMORY=1
            ${CLI} ${args})
  endif()
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
  string(TIMESTAMP t1 "%s")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${dir}: the run failed (${rc}):\n${out}\n${err}")
  endif()
  if(NOT err MATCHES "peak resident memory of rank 0 of [0-9]+: ([0-9]+) kB")
    message(FATAL_ERROR "${dir}: no peak memory report:\n${err}")
  endif()
  set(peak_kb ${CMAKE_MATCH_1} PARENT_SCOPE)
  math(EXPR seconds "${t1} - ${t0}")
  message(STATUS "${dir}: ${seconds} s, rank 0 peak resident memory ${CMAKE_MATCH_1} kB")
  # No temporary of any write is left beside the outputs.
  file(GLOB left "${WORK}/${dir}/.*tmp*")
  if(left)
    message(FATAL_ERROR "${dir}: temporaries left behind: ${left}")
  endif()
endfunction()

include(${CMAKE_CURRENT_LIST_DIR}/compare_outputs.cmake)
function(compare_case dir reference files)
  expect_same_files("${WORK}/${reference}" "${WORK}/${dir}" "${dir}" "${files}")
  foreach(f ${files})
    if(GZIP AND f MATCHES "\\.gz$")
      execute_process(COMMAND ${GZIP} -t "${WORK}/${dir}/${f}" RESULT_VARIABLE ok ERROR_VARIABLE why)
      if(NOT ok EQUAL 0)
        message(FATAL_ERROR "${dir}: gzip -t ${f} fails: ${why}")
      endif()
    endif()
  endforeach()
  message(STATUS "${dir}: ${files} identical to ${reference}")
endfunction()

# (3. at the end: .zarr outputs.)
# 1. A 256^3 pair (16.7 Mvox; .nii.gz fields of 16 planes per gzip member, so that slab
#    boundaries at P = 3 fall inside members; at P = 2 and 4 they fall on member boundaries),
#    one cheap greedy stage: the full-resolution outputs dominate the memory. One process, then
#    mpirun -np 1, 2, 3 and 4.
set(big register -d 3 -t Greedy[0.25,2,1] -m MeanSquares[${big_fixed},${big_moving},1,0]
  -c [2,1e-6,10] -f 4 -s 1vox --inverse-iterations 2 --device cpu -v 0)
# QC.png too: the picture is made from every rank's planes (no whole image on rank 0).
set(big_files 0GenericAffine.mat 1Warp.nii.gz 1InverseWarp.nii.gz warped.nii QC.png)
run_case(0 big0 "${big};-o;[${WORK}/big0/,${WORK}/big0/warped.nii]")  # one process
set(peak0 ${peak_kb})
foreach(np 1 2 3 4)
  run_case(${np} big${np} "${big};-o;[${WORK}/big${np}/,${WORK}/big${np}/warped.nii]")
  compare_case(big${np} big0 "${big_files}")
  set(peak${np} ${peak_kb})
endforeach()
math(EXPR permille "1000 * ${peak4} / ${peak0}")
message(STATUS "rank 0 peak resident memory: one process ${peak0} kB, P = 1 ${peak1} kB, P = 2 ${peak2} kB, "
               "P = 3 ${peak3} kB, P = 4 ${peak4} kB (P = 4 / one process = 0.${permille})")
math(EXPR three_times "3 * ${peak4}")
if(SANITIZE)
  # AddressSanitizer's shadow memory and its quarantine of freed blocks (256 MB by default) add to
  # every process's resident memory whatever it holds: the ratio says nothing there.
  message(STATUS "sanitize build: the rank-0 memory bound is not checked")
elseif(three_times GREATER peak0)
  message(FATAL_ERROR "rank 0 of 4 peaked at ${peak4} kB, more than a third of one process's ${peak0} kB")
endif()
file(REMOVE_RECURSE "${WORK}/big0" "${WORK}/big1" "${WORK}/big2" "${WORK}/big3" "${WORK}/big4")

# 2. The other formats: uncompressed fields and a compressed scalar image (a small pair whose
#    components are one gzip member each: rank 0 compresses all of it from its neighbours' planes).
set(small register -d 3 -t Greedy[0.25,2,1] -m CC[${small_fixed},${small_moving},1,2]
  -c [4x2,1e-6,10] -f 2x1 -s 1x0vox --warp-extension .nii --device cpu -v 0 --no-qc)
set(small_files 0GenericAffine.mat 1Warp.nii 1InverseWarp.nii warped.nii.gz)
run_case(0 small1 "${small};-o;[${WORK}/small1/,${WORK}/small1/warped.nii.gz]")
foreach(np 2 3)
  run_case(${np} small${np} "${small};-o;[${WORK}/small${np}/,${WORK}/small${np}/warped.nii.gz]")
  compare_case(small${np} small1 "${small_files}")
endforeach()

# 3. OME-Zarr outputs, one process and mpirun -np 1..4: every chunk written by one rank (slab
#    boundaries inside chunk rows at P = 3 and 4); the stores' files (metadata and compressed
#    chunks) identical to one process's.
set(zarr_args register -d 3 -t Greedy[0.25,2,1] -m CC[${small_fixed},${small_moving},1,2]
  -c [4x2,1e-6,10] -f 2x1 -s 1x0vox --warp-extension .zarr --device cpu -v 0 --no-qc)
run_case(0 zarr0 "${zarr_args};-o;[${WORK}/zarr0/,${WORK}/zarr0/warped.zarr]")  # one process
foreach(np 1 2 3 4)
  run_case(${np} zarr${np} "${zarr_args};-o;[${WORK}/zarr${np}/,${WORK}/zarr${np}/warped.zarr]")
  expect_same_tree("${WORK}/zarr0" "${WORK}/zarr${np}" "zarr${np}")
endforeach()
