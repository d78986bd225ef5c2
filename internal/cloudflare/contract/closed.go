package contract

import (
	"maps"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// closeResponses replaces every response schema of doc with a closed copy:
// allOf compositions merged into one schema, and every object schema given
// additionalProperties: false. Merging comes first because kin-openapi
// validates each allOf branch on its own, so a closed branch would reject
// the properties its siblings document. Request schemas are not touched.
func closeResponses(doc *openapi3.T) {
	if doc.Paths == nil {
		return
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.Responses == nil {
				continue
			}
			for status, ref := range op.Responses.Map() {
				if ref == nil || ref.Value == nil {
					continue
				}
				// Copies, so a response shared between operations or
				// statuses is closed (and given error_chain) once per use.
				resp := *ref.Value
				resp.Content = make(openapi3.Content, len(ref.Value.Content))
				for mediaType, media := range ref.Value.Content {
					m := *media
					if m.Schema != nil {
						m.Schema = flatten(m.Schema, true, map[*openapi3.Schema]bool{})
						if strings.HasPrefix(strings.ToUpper(status), "4") {
							allowErrorChain(m.Schema.Value)
						}
					}
					resp.Content[mediaType] = &m
				}
				op.Responses.Set(status, &openapi3.ResponseRef{Value: &resp})
			}
		}
	}
}

// flatten returns a copy of ref's schema with allOf merged in, its
// properties and items flattened and closed, and itself closed when closed
// is set (allOf branches are merged open, then closed as a whole). oneOf
// and anyOf branches are kept as they are: closing one is right only when
// each branch documents the whole object, and Cloudflare's schema has none
// in responses. A schema met again below itself (recursion) stays open.
func flatten(ref *openapi3.SchemaRef, closed bool, inProgress map[*openapi3.Schema]bool) *openapi3.SchemaRef {
	if ref == nil || ref.Value == nil || inProgress[ref.Value] {
		return ref
	}
	s := ref.Value
	inProgress[s] = true
	defer delete(inProgress, s)

	c := *s
	c.AllOf = nil
	c.Required = slices.Clone(s.Required)
	c.Items = flatten(s.Items, true, inProgress)
	c.Properties = make(openapi3.Schemas, len(s.Properties))
	for name, p := range s.Properties {
		c.Properties[name] = flatten(p, true, inProgress)
	}
	for _, branch := range s.AllOf {
		if b := flatten(branch, false, inProgress); b != nil && b.Value != nil {
			merge(&c, b.Value)
		}
	}
	if closed && isObject(&c) && c.AdditionalProperties.Has == nil && c.AdditionalProperties.Schema == nil {
		c.AdditionalProperties = openapi3.AdditionalProperties{Has: openapi3.Ptr(false)}
	}
	return &openapi3.SchemaRef{Value: &c}
}

func isObject(s *openapi3.Schema) bool {
	return s.Type.Includes(openapi3.TypeObject) || len(s.Properties) > 0
}

// merge adds what src requires to dst, as allOf does: properties and
// required are unions (a property both document gets both schemas merged),
// null is allowed only if both allow it, and each other keyword dst lacks
// is taken from src.
func merge(dst, src *openapi3.Schema) {
	if dst.Type.IsEmpty() {
		dst.Type = src.Type
	}
	dst.Nullable = dst.Nullable && src.Nullable
	// New map and slice: dst may be a shallow copy sharing them.
	props := make(openapi3.Schemas, len(dst.Properties)+len(src.Properties))
	maps.Copy(props, dst.Properties)
	for name, p := range src.Properties {
		if mine, ok := props[name]; ok && mine.Value != nil && p.Value != nil {
			both := *mine.Value
			merge(&both, p.Value)
			props[name] = &openapi3.SchemaRef{Value: &both}
			continue
		}
		props[name] = p
	}
	dst.Properties = props
	required := slices.Clone(dst.Required)
	for _, r := range src.Required {
		if !slices.Contains(required, r) {
			required = append(required, r)
		}
	}
	dst.Required = required
	if dst.Items == nil {
		dst.Items = src.Items
	} else if src.Items != nil && src.Items.Value != nil && dst.Items.Value != nil {
		both := *dst.Items.Value
		merge(&both, src.Items.Value)
		dst.Items = &openapi3.SchemaRef{Value: &both}
	}
	if dst.AdditionalProperties.Has == nil && dst.AdditionalProperties.Schema == nil {
		dst.AdditionalProperties = src.AdditionalProperties
	}
	dst.OneOf = slices.Concat(dst.OneOf, src.OneOf)
	dst.AnyOf = slices.Concat(dst.AnyOf, src.AnyOf)
	if dst.Not == nil {
		dst.Not = src.Not
	}
	if dst.Format == "" {
		dst.Format = src.Format
	}
	if dst.Enum == nil {
		dst.Enum = src.Enum
	}
	if dst.Pattern == "" {
		dst.Pattern = src.Pattern
	}
	if dst.Min == nil {
		dst.Min, dst.ExclusiveMin = src.Min, src.ExclusiveMin
	}
	if dst.Max == nil {
		dst.Max, dst.ExclusiveMax = src.Max, src.ExclusiveMax
	}
	if dst.MultipleOf == nil {
		dst.MultipleOf = src.MultipleOf
	}
	dst.MinLength = max(dst.MinLength, src.MinLength)
	if dst.MaxLength == nil {
		dst.MaxLength = src.MaxLength
	}
	dst.MinItems = max(dst.MinItems, src.MinItems)
	if dst.MaxItems == nil {
		dst.MaxItems = src.MaxItems
	}
	dst.UniqueItems = dst.UniqueItems || src.UniqueItems
	dst.MinProps = max(dst.MinProps, src.MinProps)
	if dst.MaxProps == nil {
		dst.MaxProps = src.MaxProps
	}
	dst.ReadOnly = dst.ReadOnly || src.ReadOnly
	dst.WriteOnly = dst.WriteOnly || src.WriteOnly
}

// allowErrorChain lets the errors[] items of a failure envelope carry
// error_chain: [{code, message}], the one undocumented field Cloudflare is
// observed to send (with 6003 "Invalid request headers"; API-NOTES.md).
func allowErrorChain(envelope *openapi3.Schema) {
	errs := envelope.Properties["errors"]
	if errs == nil || errs.Value == nil || errs.Value.Items == nil || errs.Value.Items.Value == nil {
		return
	}
	link := openapi3.NewObjectSchema().
		WithProperty("code", openapi3.NewIntegerSchema()).
		WithProperty("message", openapi3.NewStringSchema()).
		WithoutAdditionalProperties()
	link.Required = []string{"code", "message"}
	item := errs.Value.Items.Value
	item.Properties["error_chain"] = openapi3.NewArraySchema().WithItems(link).NewRef()
}
