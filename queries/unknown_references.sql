-- unknown_references: rows whose reference is missing from the reference
-- tables, so the reference data can be fixed. Such rows are kept and still
-- counted by the analytics (docs/ANALYTICS.md); this lists them.
--   kind = 'enrollment': an enrollment whose course_id is not in courses;
--   kind = 'attempt':    an attempt whose assessment_id is not in assessments.
-- reference_id is the missing key; record_id the attempt's id (NULL for an
-- enrollment, whose key is student_id + course_id).

SELECT
    'enrollment'                               AS kind,
    e.student_id,
    e.course_id,
    e.course_id                                AS reference_id,
    CAST(NULL AS VARCHAR)                      AS record_id,
    'course ' || e.course_id || ' is not in courses' AS reason
FROM enrollments e
LEFT JOIN courses c ON c.course_id = e.course_id
WHERE c.course_id IS NULL

UNION ALL

SELECT
    'attempt'                                  AS kind,
    t.student_id,
    t.course_id,
    t.assessment_id                            AS reference_id,
    t.attempt_id                               AS record_id,
    'assessment ' || t.assessment_id || ' is not in assessments' AS reason
FROM attempts t
LEFT JOIN assessments s ON s.assessment_id = t.assessment_id
WHERE s.assessment_id IS NULL
