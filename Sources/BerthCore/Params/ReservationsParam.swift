import BerthJSON

fileprivate extension String {
    func replacingSuffix(_ suffix: String, with replacement: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + replacement : self
    }
}

extension ParamReader {
    /// Parses `reservations` (lease.create, lease.update, availability.find), checking GPU profiles
    /// and models against `models`; nil when absent or wrong (the problems are recorded).
    public mutating func reservations(required: Bool, models: GPUModelTable)
        -> [(id: String?, request: ReservationRequest)]?
    {
        guard let list = array("reservations", required: required) else { return nil }
        if list.isEmpty {
            fail("reservations", "must contain at least one reservation")
            return nil
        }
        if list.count > 100 { fail("reservations", "at most 100 reservations per lease") }
        var out: [(String?, ReservationRequest)] = []
        var errors: [BerthError.FieldError] = []
        for (i, item) in list.enumerated() {
            let path = "\(fieldPath("reservations"))[\(i)]"
            if let req = ReservationRequest.parse(item, path: path, errors: &errors) {
                if req.kind == .gpu, let profile = req.profile {
                    do throws(BerthError) {
                        _ = try models.resolve(profile: profile, gpuModel: req.gpuModel, path: path)
                    } catch {
                        errors.append(contentsOf: error.fieldErrors)
                        continue
                    }
                }
                if req.kind == .instance, let profile = req.gpuProfile {
                    do throws(BerthError) {
                        _ = try models.resolve(profile: profile, gpuModel: req.gpuModel, path: path)
                    } catch {
                        // resolve() names `profile`; for instances the field is `gpu_profile`.
                        errors.append(
                            contentsOf: error.fieldErrors.map {
                                .init(
                                    path: $0.path.replacingSuffix(".profile", with: ".gpu_profile"), message: $0.message
                                )
                            })
                        continue
                    }
                }
                var id: String? = nil
                if let v = item["id"], !v.isNull {
                    if let s = v.stringValue {
                        id = s
                    } else {
                        errors.append(.init(path: "\(path).id", message: "expected a string"))
                    }
                }
                out.append((id, req))
            }
        }
        merge(errors)
        return errors.isEmpty ? out : nil
    }
}
