-- Departures and delays per carrier and day, with the airline's name from that day's snapshot.
-- Its upstream tables (flights, airlines) are read from this SQL; nothing declares them.
SELECT
  f.flight_date,
  f.carrier,
  a.name AS airline,
  count(*) AS departures,
  sum(CASE WHEN f.dep_time IS NULL THEN 1 ELSE 0 END) AS cancelled,
  avg(f.dep_delay) AS avg_dep_delay,
  avg(f.arr_delay) AS avg_arr_delay,
  max(f.dep_delay) AS max_dep_delay
FROM flights AS f
LEFT JOIN airlines AS a
  ON a.carrier = f.carrier AND a.snapshot_date = f.flight_date
GROUP BY f.flight_date, f.carrier, a.name
